"""Clinical-style sentences generated from templates and vocabularies (no patient data).

Training and evaluation use disjoint templates and different random draws, so the
evaluation sentences are never seen in training, not even as a pattern.
"""

from __future__ import annotations

import random

_TEMPLATES = [
    "{age}-year-old {sex} presenting with {symptom} for {duration}.",
    "Patient reports {symptom} and {symptom2}, worse {timing}.",
    "History of {condition}; currently on {drug} {dose} {freq}.",
    "{exam} revealed {finding}; no evidence of {negfinding}.",
    "Plan: start {drug} {dose} {freq} and reassess in {duration}.",
    "Admitted for {condition} with {symptom}; {lab} was {labvalue}.",
    "Denies {symptom}, {symptom2} or {symptom3}.",
    "{imaging} of the {site} shows {finding}.",
    "Discharged home in stable condition after treatment of {condition}.",
    "Allergic to {drug}; reaction was {reaction}.",
    "Follow-up with {specialty} in {duration} for {condition}.",
    "On examination the {site} was {examword} with {finding}.",
    "{lab} trending {trend} since admission, now {labvalue}.",
    "Family history significant for {condition} in {relative}.",
    "Pain score {score}/10 in the {site}, described as {painquality}.",
    "Started on {drug} for suspected {condition}; cultures pending.",
    "The {age}-year-old {sex} was seen in {specialty} clinic for {symptom}.",
    "Vital signs: {vital}; patient {mentalstatus}.",
    "{imaging} negative for {negfinding}; {finding} noted incidentally.",
    "Counselled regarding {condition} and adherence to {drug}.",
    "Sudden onset {symptom} {timing}, associated with {symptom2}.",
    "Wound on the {site} {examword}, dressing changed {freq}.",
    "Recommend {imaging} of the {site} if {symptom} persists beyond {duration}.",
    "Medication reconciliation: {drug} {dose} {freq}, {drug2} stopped.",
    "Consulted {specialty} regarding {finding} on {imaging}.",
]
_VOCAB = {
    "age": [str(a) for a in range(18, 96)],
    "sex": ["man", "woman", "male", "female"],
    "symptom": [
        "chest pain",
        "shortness of breath",
        "fever",
        "productive cough",
        "abdominal pain",
        "nausea",
        "headache",
        "dizziness",
        "palpitations",
        "fatigue",
        "lower back pain",
        "dysuria",
        "swelling of the legs",
        "rash",
        "blurred vision",
        "weight loss",
        "night sweats",
        "syncope",
    ],
    "condition": [
        "type 2 diabetes",
        "hypertension",
        "heart failure",
        "COPD",
        "asthma",
        "atrial fibrillation",
        "pneumonia",
        "chronic kidney disease",
        "urinary tract infection",
        "cellulitis",
        "sepsis",
        "hypothyroidism",
        "deep vein thrombosis",
        "migraine",
        "anaemia",
        "osteoarthritis",
    ],
    "drug": [
        "metformin",
        "lisinopril",
        "atorvastatin",
        "amoxicillin",
        "furosemide",
        "apixaban",
        "salbutamol",
        "levothyroxine",
        "paracetamol",
        "ibuprofen",
        "prednisolone",
        "ceftriaxone",
        "insulin glargine",
        "omeprazole",
        "bisoprolol",
    ],
    "dose": ["5 mg", "10 mg", "20 mg", "40 mg", "500 mg", "1 g", "2.5 mg", "100 mcg"],
    "freq": [
        "once daily",
        "twice daily",
        "three times daily",
        "every 8 hours",
        "at night",
        "as needed",
        "weekly",
    ],
    "duration": [
        "two days",
        "one week",
        "three weeks",
        "six months",
        "48 hours",
        "ten days",
        "one month",
    ],
    "timing": ["at night", "on exertion", "after meals", "in the morning", "when lying flat"],
    "exam": [
        "Auscultation",
        "Abdominal examination",
        "Neurological examination",
        "Cardiac examination",
        "Skin inspection",
    ],
    "finding": [
        "bibasal crackles",
        "a systolic murmur",
        "mild hepatomegaly",
        "pitting oedema",
        "a small pleural effusion",
        "consolidation",
        "erythema and warmth",
        "a 2 cm nodule",
        "reduced air entry",
    ],
    "negfinding": [
        "pneumothorax",
        "fracture",
        "acute bleeding",
        "pulmonary embolism",
        "bowel obstruction",
        "focal neurological deficit",
    ],
    "lab": [
        "Creatinine",
        "Haemoglobin",
        "CRP",
        "Potassium",
        "HbA1c",
        "Troponin",
        "White cell count",
        "Sodium",
        "INR",
    ],
    "labvalue": ["elevated", "within normal limits", "mildly raised", "low", "markedly high"],
    "imaging": ["Chest X-ray", "CT scan", "Ultrasound", "MRI", "Echocardiogram"],
    "site": [
        "left lower limb",
        "chest",
        "abdomen",
        "right knee",
        "lumbar spine",
        "head",
        "right upper quadrant",
        "left forearm",
    ],
    "reaction": ["urticaria", "anaphylaxis", "nausea", "a widespread rash"],
    "specialty": [
        "cardiology",
        "nephrology",
        "respiratory",
        "endocrinology",
        "general surgery",
        "neurology",
        "dermatology",
    ],
    "examword": ["tender", "swollen", "unremarkable", "erythematous", "warm"],
    "trend": ["upward", "downward", "stable"],
    "relative": ["mother", "father", "sibling", "grandparent"],
    "score": [str(s) for s in range(0, 11)],
    "painquality": ["sharp", "dull", "burning", "throbbing", "cramping"],
    "vital": [
        "BP 142/88, HR 96, SpO2 94% on air",
        "BP 118/72, HR 72, afebrile",
        "temperature 38.6, HR 110",
        "RR 22, SpO2 91% on 2 L oxygen",
    ],
    "mentalstatus": [
        "alert and oriented",
        "drowsy but rousable",
        "confused",
        "comfortable at rest",
    ],
}
_VOCAB["symptom2"] = _VOCAB["symptom3"] = _VOCAB["symptom"]
_VOCAB["drug2"] = _VOCAB["drug"]


def _fill(template: str, rng: random.Random) -> str:
    words = {k: rng.choice(v) for k, v in _VOCAB.items() if "{" + k + "}" in template}
    return template.format(**words)


def clinical_corpus(n_train: int, n_eval: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, eval) sentences; evaluation uses templates training never saw."""
    rng = random.Random(seed)
    templates = list(_TEMPLATES)
    rng.shuffle(templates)
    cut = len(templates) * 4 // 5
    train_t, eval_t = templates[:cut], templates[cut:]
    train = [_fill(rng.choice(train_t), rng) for _ in range(n_train)]
    seen = set(train)
    evaluation: list[str] = []
    while len(evaluation) < n_eval:
        sentence = _fill(rng.choice(eval_t), rng)
        if sentence not in seen:
            evaluation.append(sentence)
    return train, evaluation


def _clauses(sentence: str) -> list[str]:
    """A sentence cut at its clause marks (``;``, ``:``, ``,``), marks kept on the left."""
    parts, current = [], ""
    for char in sentence.rstrip("."):
        current += char
        if char in ";:,":
            parts.append(current.strip())
            current = ""
    if current.strip():
        parts.append(current.strip())
    return parts


def recombined(sentences: list[str], n: int, seed: int = 0) -> list[str]:
    """``n`` more training texts made from ``sentences`` alone (no new templates).

    Half are clauses of different sentences joined into new ones (new structures, as
    unseen note styles have); half are notes of two to four sentences (the longer inputs
    a site also sends). Distillation needs no labels, so any such text teaches the
    student how the teacher reads clinical language.
    """
    rng = random.Random(seed)
    clauses = [c.rstrip(";:,") for s in sentences for c in _clauses(s)]
    texts = []
    for i in range(n):
        if i % 2 == 0:
            picked = rng.sample(clauses, rng.randint(2, 3))
            joiner = rng.choice(["; ", ", ", ". "])
            text = joiner.join(picked)
            texts.append(text[0].upper() + text[1:] + ".")
        else:
            texts.append(" ".join(rng.sample(sentences, rng.randint(2, 4))))
    return texts


__all__ = ["clinical_corpus", "recombined"]
