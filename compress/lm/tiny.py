"""A small Llama trained from a script on the synthetic clinical corpus.

Deterministic for a given spec: the tokenizer is trained on the corpus the repo generates
(``compress.corpus``), the weights start from ``torch.manual_seed(spec.seed)`` and train
for ``spec.steps`` steps of next-token loss on one thread. ``steps=0`` gives random
weights of the spec's shape, which is all a speed benchmark needs.

The folder written is what ``LlamaForCausalLM.save_pretrained`` and
``PreTrainedTokenizerFast.save_pretrained`` write, plus a chat template, so the
onnxruntime-genai builder and ``transformers`` both read it as a local model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from compress.corpus import clinical_corpus

# A plain role-tagged template; the builder copies it as chat_template.jinja.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


@dataclass(frozen=True)
class LlamaSpec:
    """The shape of the model and how long it trains."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 256
    vocab: int = 512  # the BPE tokenizer's size
    #: The model's vocabulary (embedding and output rows); 0: the tokenizer's size. A
    #: speed benchmark sets a real architecture's (SmolLM2's 49152): the extra rows cost
    #: what they cost in a real model, and no token the tokenizer knows maps to them.
    model_vocab: int = 0
    #: Zero the output rows of every token that does not print on its own (padding past
    #: the tokenizer, special tokens, partial UTF-8 bytes): greedy decoding of random
    #: weights then streams one visible piece per token and never stops at EOS, so every
    #: request of a speed benchmark generates its ``max_tokens``.
    printable_only: bool = False
    context: int = 256
    steps: int = 0  # 0: random weights
    batch: int = 16
    seq: int = 64
    lr: float = 3e-3
    sentences: int = 4000  # training sentences from the corpus generator
    seed: int = 0

    def recorded(self) -> dict[str, object]:
        """The spec as provenance records it: fields added later are left out while unset,
        so specs (and models) made before them keep their records and cache keys."""
        fields = asdict(self)
        for name in ("model_vocab", "printable_only"):
            if not fields[name]:
                del fields[name]
        return fields

    def key(self) -> str:
        """A short, stable name for caches."""
        import hashlib

        encoded = json.dumps(self.recorded(), sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()[:12]


def corpus(spec: LlamaSpec) -> tuple[list[str], list[str]]:
    """Training and held-out sentences (disjoint templates) for this spec."""
    return clinical_corpus(spec.sentences, max(200, spec.sentences // 10), seed=spec.seed)


def build_llama(spec: LlamaSpec, out: Path) -> Path:
    """Train the tokenizer and the model, save both to ``out``; returns ``out``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    train, _ = corpus(spec)
    tokenizer = _tokenizer(train, spec.vocab)
    torch.manual_seed(spec.seed)
    config = LlamaConfig(
        vocab_size=max(len(tokenizer), spec.model_vocab),
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    if spec.printable_only:
        _silence_unprintable(model, tokenizer)
    if spec.steps:
        _train(model, tokenizer, train, spec)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return out


def _silence_unprintable(model, tokenizer) -> None:  # type: ignore[no-untyped-def]
    """Zero the output rows of tokens that print nothing on their own. Their logits are
    then 0 while the other tokens' spread around 0, so the greedy choice is always a
    printable token. Compute is unchanged: the rows are still multiplied."""
    import torch

    rows = model.lm_head.weight  # (model vocab, hidden)
    silent = [
        i
        for i in range(len(tokenizer))
        if i in tokenizer.all_special_ids or _unprintable(tokenizer.decode([i]))
    ]
    with torch.no_grad():
        rows[len(tokenizer) :].zero_()
        rows[silent] = 0.0


def _unprintable(piece: str) -> bool:
    return not piece.strip() or "\ufffd" in piece


def _tokenizer(texts: list[str], vocab: int):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=raw,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE,
    )


def _train(model, tokenizer, texts: list[str], spec: LlamaSpec) -> None:  # type: ignore[no-untyped-def]
    """Next-token loss over the corpus packed into ``spec.seq``-token rows."""
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    ids: list[int] = []
    for text in texts:
        ids += [tokenizer.bos_token_id, *tokenizer.encode(text), tokenizer.eos_token_id]
    rows = len(ids) // spec.seq
    data = torch.tensor(ids[: rows * spec.seq]).view(rows, spec.seq)
    generator = torch.Generator().manual_seed(spec.seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=spec.lr)
    model.train()
    for _ in range(spec.steps):
        batch = data[torch.randint(0, rows, (spec.batch,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()


__all__ = ["CHAT_TEMPLATE", "LlamaSpec", "build_llama", "corpus"]
