"""The class against the network: students label test images, and their answers are compared
with the shipped models' on the same images (Zalando measured people at 83.5% on Fashion-MNIST).

  the activity   `Activity(n_images, same_set, seed, show_names)`, set by the teacher, kept as a
                 tag of its own experiment: how many images each student labels (20 by
                 default), whether the whole class labels the same set or each student a set of
                 their own (drawn from the seed and the student's id), and whether names are
                 shown to others. A new seed (or size, or kind of set) is a new round: answers of
                 earlier rounds stay stored but no longer count.
  the images     test images, as many of each class as the size allows (20 -> 2 per class), so
                 every row of the confusion matrix has images; in a random order
  the answers    one run per student in the experiment "fmnist-workbench-humans" (never listed
                 with the training runs: runs.list_runs searches its own experiment only),
                 holding the round and {test index: answered class} as a tag; only images of the
                 student's own set are accepted, so a student stores at most n_images (<= 100)
  the figures    `class_figures`: each student's accuracy, the class mean and spread (standard
                 deviation over students), the majority vote per image (a tie counts as a fair
                 draw among the tied answers), both confusion matrices (people: every answer; network: each
                 labelled image once), the images the class and the network found hardest —
                 all computed from the stored answers

Left out: timing each answer (people are not timed here), and labelling the training set.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from .data import CLASSES, NUM_CLASSES
from .errors import WorkbenchError

EXPERIMENT = "fmnist-workbench-humans"
ACTIVITY_TAG = "fmnist.humans_activity"
ANSWERS_TAG, OWNER_TAG, OWNER_ID_TAG = "fmnist.answers", "fmnist.owner", "fmnist.owner_id"
ZALANDO_HUMAN_ACCURACY = 0.835  # zalandoresearch/fashion-mnist README: human performance, 83.5%
MAX_IMAGES = 100                # per student and round: the bound on what one student stores


@dataclass(frozen=True)
class Activity:
    n_images: int = 20       # about five minutes of labelling: 2 images of each class
    same_set: bool = True    # one set for the class: the majority vote is then over the same images
    seed: int = 0            # which images; the teacher draws a new one for a new round
    show_names: bool = False  # names of others stay hidden unless the teacher turns them on

    def validate(self) -> "Activity":
        n = self.n_images
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_IMAGES:
            raise WorkbenchError(f"the number of images is 1 to {MAX_IMAGES}, got {self.n_images!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise WorkbenchError(f"the seed is a whole number >= 0, got {self.seed!r}")
        return self

    @property
    def round(self) -> str:
        """What makes the image sets: answers stored under another round no longer count."""
        return f"{self.seed}-{self.n_images}-{'same' if self.same_set else 'own'}"


# --- where it is kept -----------------------------------------------------------------------------

def _experiment_id() -> str:
    """The humans' experiment in the configured store, made on first use."""
    from mlflow.exceptions import MlflowException
    from . import runs
    s = runs.store()
    exp = s.client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            s.client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    main = s.client.get_experiment(s.experiment_id).artifact_location
    try:  # nothing is logged as an artifact; a location beside the main one keeps MLflow off ./mlruns
        return s.client.create_experiment(EXPERIMENT, artifact_location=f"{main.rstrip('/')}-humans")
    except MlflowException:  # made meanwhile by another session
        return s.client.get_experiment_by_name(EXPERIMENT).experiment_id


def activity() -> Activity:
    from . import runs
    raw = runs.store().client.get_experiment(_experiment_id()).tags.get(ACTIVITY_TAG)
    try:
        known = {f.name for f in fields(Activity)}
        return Activity(**{k: v for k, v in json.loads(raw).items() if k in known}).validate()
    except (TypeError, ValueError, WorkbenchError):
        return Activity()


def set_activity(user, **changes: Any) -> Activity:
    from . import runs
    from .roles import require_teacher
    require_teacher(user, "change the Beat-the-network activity")
    new = Activity(**{**asdict(activity()), **changes}).validate()
    runs.store().client.set_experiment_tag(_experiment_id(), ACTIVITY_TAG, json.dumps(asdict(new)))
    return new


# --- the images -------------------------------------------------------------------------------------

def image_set(act: Activity, user_id: str, labels: np.ndarray) -> list[int]:
    """The test indices this student labels, in the order shown: n // 10 of each class, the rest
    from any class, shuffled; the same for everyone, or seeded by the student's id too."""
    key = [act.seed] if act.same_set else [act.seed, int(user_id[:12] or "0", 16)]
    rng = np.random.default_rng(key)
    labels = np.asarray(labels)
    per_class = act.n_images // NUM_CLASSES
    chosen = [int(i) for c in range(NUM_CLASSES)
              for i in rng.choice(np.flatnonzero(labels == c), per_class, replace=False)]
    rest = np.setdiff1d(np.arange(len(labels)), chosen)
    chosen += [int(i) for i in rng.choice(rest, act.n_images - len(chosen), replace=False)]
    return [chosen[k] for k in rng.permutation(len(chosen))]


# --- the answers ---------------------------------------------------------------------------------------

def _student_run(user_id: str):
    from . import runs
    # the oldest: two tabs of one student racing to make their run both end up writing to one
    page = runs.store().client.search_runs([_experiment_id()], filter_string=f"tags.`{OWNER_ID_TAG}` = '{user_id}'",
                                           max_results=1, order_by=["attributes.start_time ASC"])
    return page[0] if page else None


def _stored(run, round_: str) -> dict[int, int]:
    try:
        d = json.loads(run.data.tags.get(ANSWERS_TAG) or "{}")
        return {int(k): int(v) for k, v in d.get("answers", {}).items()} if d.get("round") == round_ else {}
    except (TypeError, ValueError, AttributeError):
        return {}


def my_answers(user, act: Activity | None = None) -> dict[int, int]:
    """This student's answers of the current round: {test index: class number}."""
    act = act or activity()
    run = _student_run(user.id)
    return _stored(run, act.round) if run is not None else {}


def record_answer(user, labels: np.ndarray, index: int, answer: int) -> dict[int, int]:
    """Store one answer of this student (a second answer to the same image replaces the first);
    returns all their answers of the round. Only images of their own set are accepted."""
    from mlflow.entities import RunTag
    from . import runs
    act = activity()
    if int(index) not in image_set(act, user.id, labels):
        raise WorkbenchError(f"test image {index} is not in your set of this round; reload the page")
    if not 0 <= int(answer) < NUM_CLASSES:
        raise WorkbenchError(f"an answer is a class number 0 to {NUM_CLASSES - 1}, got {answer!r}")
    client = runs.store().client
    run = _student_run(user.id)
    if run is None:
        run = client.create_run(_experiment_id(), run_name=f"answers-{user.id[:8]}", start_time=int(time.time() * 1000),
                                tags={OWNER_TAG: user.name, OWNER_ID_TAG: user.id})
    answers = {**_stored(run, act.round), int(index): int(answer)}
    payload = {"round": act.round, "answers": {str(k): v for k, v in answers.items()}}
    client.log_batch(run.info.run_id, tags=[RunTag(ANSWERS_TAG, json.dumps(payload, separators=(",", ":"))),
                                            RunTag(OWNER_TAG, user.name)])
    return answers


def class_answers(act: Activity | None = None) -> list[dict[str, Any]]:
    """Every student's answers of the current round: [{"owner_id", "name", "answers"}], in the
    order they first answered (so "student 3" stays student 3)."""
    from . import runs
    act = act or activity()
    client, out, token, seen = runs.store().client, [], None, set()
    while True:
        page = client.search_runs([_experiment_id()], max_results=1000, page_token=token,
                                  order_by=["attributes.start_time ASC"])
        for r in page:
            owner = r.data.tags.get(OWNER_ID_TAG, "")
            if owner in seen:  # one student, one entry: the oldest run, the one record_answer writes to
                continue
            seen.add(owner)
            if a := _stored(r, act.round):
                out.append({"owner_id": owner, "name": r.data.tags.get(OWNER_TAG, ""), "answers": a})
        token = page.token
        if not token:
            return out


def clear_answers(user) -> int:
    """Delete every student's stored answers (the teacher only); returns how many students."""
    from . import runs
    from .roles import require_teacher
    require_teacher(user, "delete the class's answers")
    client, n = runs.store().client, 0
    for r in client.search_runs([_experiment_id()], max_results=1000):
        client.delete_run(r.info.run_id)
        n += 1
    return n


# --- the network on the same images ---------------------------------------------------------------------

def network_answers(model, images: np.ndarray, labels: np.ndarray, indices: list[int]) -> dict[int, tuple[int, float]]:
    """{test index: (the model's class, its probability of the true class)} for these images
    (uint8 28x28, as the dataset stores them: the model normalizes inside)."""
    from .predict import predict_arrays
    idx = sorted(set(int(i) for i in indices))
    if not idx:
        return {}
    preds = predict_arrays(model, images[idx].astype(np.float32) / 255.0)
    return {i: (p["index"], p["probabilities"][CLASSES[int(labels[i])]]) for i, p in zip(idx, preds)}


# --- the figures -------------------------------------------------------------------------------------------

def majority_vote(answers_per_image: dict[int, list[int]]) -> dict[int, tuple[int, ...]]:
    """Each image's most frequent answer(s): one class, or the classes tied at the top."""
    out = {}
    for i, given in answers_per_image.items():
        counts = Counter(given)
        top = max(counts.values())
        out[i] = tuple(sorted(c for c, n in counts.items() if n == top))
    return out


def vote_accuracy(votes: dict[int, tuple[int, ...]], labels: np.ndarray) -> float | None:
    """The majority vote's accuracy, a tie settled by a fair draw among the tied classes: an
    image scores 1/k when the true class is one of k tied answers (the expected score; a fixed
    rule such as "the lowest class wins" would favour T-shirt/top and Trouser in a small class)."""
    if not votes:
        return None
    return sum((1 / len(v)) if int(labels[i]) in v else 0.0 for i, v in votes.items()) / len(votes)


def confusion(pairs: list[tuple[int, int]]) -> np.ndarray:
    """(true, answered) pairs -> a 10x10 count matrix, rows = true class."""
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for t, a in pairs:
        cm[t, a] += 1
    return cm


def class_figures(students: list[dict[str, Any]], labels: np.ndarray,
                  network: dict[int, tuple[int, float]], hardest: int = 8) -> dict[str, Any]:
    """The projector's figures from the stored answers (`class_answers`) and one network's
    answers on the same images (`network_answers`, covering every answered image)."""
    labels = np.asarray(labels)
    per_student, per_image, pairs = [], {}, []
    for s in students:
        a = s["answers"]
        right = sum(int(labels[i]) == v for i, v in a.items())
        net_right = sum(network[i][0] == int(labels[i]) for i in a)
        per_student.append({"owner_id": s["owner_id"], "name": s["name"], "answered": len(a),
                            "accuracy": right / len(a), "network_accuracy": net_right / len(a)})
        for i, v in a.items():
            per_image.setdefault(i, []).append(v)
            pairs.append((int(labels[i]), v))
    images = sorted(per_image)
    votes = majority_vote(per_image)
    accs = np.array([s["accuracy"] for s in per_student], dtype=float)
    wrong_share = {i: sum(v != int(labels[i]) for v in per_image[i]) / len(per_image[i]) for i in images}
    human_hard = sorted((i for i in images if wrong_share[i] > 0),
                        key=lambda i: (-wrong_share[i], -len(per_image[i]), i))
    net_hard = sorted((i for i in images if network[i][0] != int(labels[i])), key=lambda i: (network[i][1], i))
    return {
        "students": per_student,
        "n_students": len(per_student), "n_answers": len(pairs), "n_images": len(images),
        "mean": float(accs.mean()) if len(accs) else None,
        "spread": float(accs.std()) if len(accs) else None,  # over students (population std)
        "lowest": float(accs.min()) if len(accs) else None, "highest": float(accs.max()) if len(accs) else None,
        "pooled": (sum(t == a for t, a in pairs) / len(pairs)) if pairs else None,  # every answer alike
        "majority": vote_accuracy(votes, labels),
        "votes": votes,
        "network": (sum(network[i][0] == int(labels[i]) for i in images) / len(images)) if images else None,
        "human_confusion": confusion(pairs),
        "network_confusion": confusion([(int(labels[i]), network[i][0]) for i in images]),
        "hardest_humans": [{"index": i, "label": int(labels[i]), "wrong_share": wrong_share[i],
                            "answers": len(per_image[i]), "common_answer": Counter(per_image[i]).most_common(1)[0][0],
                            "network": network[i][0]} for i in human_hard[:hardest]],
        "hardest_network": [{"index": i, "label": int(labels[i]), "network": network[i][0],
                             "p_true": network[i][1], "wrong_share": wrong_share[i]} for i in net_hard[:hardest]],
    }


def my_result(answers: dict[int, int], labels: np.ndarray, networks: dict[str, dict[int, tuple[int, float]]]) -> dict:
    """One student's score against each network on the same images, and which each got wrong."""
    labels = np.asarray(labels)
    idx = sorted(answers)
    right = sum(answers[i] == int(labels[i]) for i in idx)
    out = {"answered": len(idx), "accuracy": right / len(idx) if idx else None, "networks": {}, "rows": []}
    for name, net in networks.items():
        out["networks"][name] = (sum(net[i][0] == int(labels[i]) for i in idx) / len(idx)) if idx else None
    for i in idx:
        out["rows"].append({"index": i, "label": int(labels[i]), "you": answers[i],
                            **{name: net[i][0] for name, net in networks.items()}})
    return out
