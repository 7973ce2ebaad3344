"""What a caption says is in an image, as objects: the sample's shapes, and COCO's 80 categories.

The COCO word list maps each category to the words captions use for it (common names, plurals); it was written
for blipnb, in the spirit of the synonym list CHAIR (Rohrbach et al. 2018) uses. Multi-word names are matched
before single words, so "hot dog" is food and not a dog, and "teddy bear" is not a bear.
"""
from __future__ import annotations

import itertools

from ..schema import STOP_WORDS, words

# category -> the other words and phrases that name it (singular; plurals are derived below).
COCO_WORDS = {
    "person": "people man woman boy girl child kid guy lady baby toddler adult player skier surfer skateboarder "
              "snowboarder rider pedestrian teenager gentleman officer policeman batter catcher pitcher umpire "
              "worker chef cook student tourist spectator crowd",
    "bicycle": "bike",
    "car": "automobile sedan taxi cab jeep suv van",
    "motorcycle": "motorbike motor_bike scooter moped dirt_bike",
    "airplane": "plane jet airliner aircraft jetliner",
    "bus": "double_decker trolley_bus school_bus",
    "train": "locomotive railcar subway tram",
    "truck": "pickup lorry fire_truck",
    "boat": "ship sailboat yacht canoe kayak ferry",
    "traffic light": "traffic_signal stoplight stop_light street_light",
    "fire hydrant": "hydrant",
    "stop sign": "",
    "parking meter": "meter",
    "bench": "",
    "bird": "seagull gull pigeon duck goose swan parrot owl",
    "cat": "kitten kitty",
    "dog": "puppy pup",
    "horse": "pony foal",
    "sheep": "lamb ram",
    "cow": "cattle calf bull ox",
    "elephant": "",
    "bear": "grizzly polar_bear",
    "zebra": "",
    "giraffe": "",
    "backpack": "back_pack rucksack",
    "umbrella": "parasol",
    "handbag": "purse hand_bag",
    "tie": "necktie bow_tie",
    "suitcase": "luggage suit_case",
    "frisbee": "flying_disc",
    "skis": "ski",
    "snowboard": "snow_board",
    "sports ball": "ball soccer_ball football basketball baseball tennis_ball volleyball",
    "kite": "",
    "baseball bat": "bat",
    "baseball glove": "glove mitt",
    "skateboard": "skate_board",
    "surfboard": "surf_board",
    "tennis racket": "racket racquet",
    "bottle": "",
    "wine glass": "",
    "cup": "mug",
    "fork": "",
    "knife": "",
    "spoon": "",
    "bowl": "",
    "banana": "",
    "apple": "",
    "sandwich": "burger hamburger sub",
    "orange": "",
    "broccoli": "",
    "carrot": "",
    "hot dog": "hotdog",
    "pizza": "",
    "donut": "doughnut",
    "cake": "cupcake",
    "chair": "stool",
    "couch": "sofa",
    "potted plant": "houseplant house_plant plant",
    "bed": "",
    "dining table": "table",
    "toilet": "",
    "tv": "television tv_monitor",
    "laptop": "notebook_computer",
    "mouse": "computer_mouse",
    "remote": "remote_control controller",
    "keyboard": "",
    "cell phone": "phone cellphone smartphone mobile_phone",
    "microwave": "",
    "oven": "stove",
    "toaster": "",
    "sink": "",
    "refrigerator": "fridge",
    "book": "novel",
    "clock": "",
    "vase": "",
    "scissors": "",
    "teddy bear": "teddy stuffed_animal",
    "hair drier": "hair_dryer hairdryer blow_dryer",
    "toothbrush": "tooth_brush",
}
IRREGULAR_PLURALS = {"person": "persons", "man": "men", "woman": "women", "child": "children", "mouse": "mice",
                     "knife": "knives", "sheep": "sheep", "calf": "calves", "ox": "oxen", "goose": "geese",
                     "skis": "skis", "scissors": "scissors", "bus": "buses", "people": "people",
                     "cattle": "cattle", "luggage": "luggage", "broccoli": "broccoli", "crowd": "crowds"}


def _plural(word: str) -> str:
    last = word.split()[-1]
    if last in IRREGULAR_PLURALS:
        plural = IRREGULAR_PLURALS[last]
    elif last.endswith(("s", "x", "ch", "sh")):
        plural = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        plural = last[:-1] + "ies"
    else:
        plural = last + "s"
    return " ".join([*word.split()[:-1], plural])


def _phrases() -> dict[tuple[str, ...], str]:
    """{words of a name, singular or plural: its category}."""
    out = {}
    for category, others in COCO_WORDS.items():
        for name in [category, *(w.replace("_", " ") for w in others.split())]:
            for form in (name, _plural(name)):
                out.setdefault(tuple(form.split()), category)
    return out


COCO_PHRASES = _phrases()
_LONGEST = max(len(k) for k in COCO_PHRASES)
COCO_CATEGORIES = tuple(COCO_WORDS)
# Words that also describe another thing: "an orange cat", "a remote village". Before a content word they are not
# the object; before a function word or at the end ("an orange and a banana") they are.
DESCRIBING_WORDS = frozenset({"orange", "remote"})


def coco_mentions(caption: str) -> list[str]:
    """The COCO categories a caption names, in order, each once; longer names first ("hot dog" before "dog")."""
    tokens, found, i = words(caption), [], 0
    while i < len(tokens):
        for n in range(min(_LONGEST, len(tokens) - i), 0, -1):
            category = COCO_PHRASES.get(tuple(tokens[i:i + n]))
            describes = n == 1 and tokens[i] in DESCRIBING_WORDS and i + 1 < len(tokens) \
                and tokens[i + 1] not in STOP_WORDS
            if category is not None and not describes:
                found.append(category)
                i += n
                break
        else:
            i += 1
    return list(dict.fromkeys(found))


def category_names(instances: dict) -> dict[int, str]:
    """{category id: blipnb's category name} of a COCO instances file ("motorbike" and the like mapped too)."""
    out = {}
    for c in instances.get("categories") or []:
        name = str(c.get("name", "")).lower()
        out[c.get("id")] = name if name in COCO_WORDS else COCO_PHRASES.get(tuple(name.split()), name)
    return out


# ---------------------------------------------------------------------------------------------- the sample

OBJECT_KEYS = ("shape", "colour", "size", "position")
MAX_DESCRIBED = 6  # objects a caption is matched on: bounds the search (the sample has at most 4 shapes)


def match_objects(truth: list[dict], said: list[dict]) -> list[int | None]:
    """For each true object, the index of the described object it is matched with (None: left out).

    One-to-one, choosing the matching that agrees on the most attribute values (shape, colour, size, position),
    over the first MAX_DESCRIBED described objects. 04's attribute table and the sample's CHAIR share it."""
    said = said[:MAX_DESCRIBED]

    def agreement(t, p):
        return sum(t[k] == p.get(k) for k in OBJECT_KEYS)

    slots = list(range(len(said))) + [None] * max(0, len(truth) - len(said))
    best = max(itertools.permutations(slots, len(truth)),
               key=lambda perm: sum(agreement(t, said[j]) for t, j in zip(truth, perm) if j is not None))
    return list(best)


def sample_objects(truth: dict, said: list[dict]) -> dict:
    """How one caption's described shapes (sample.parse_attributes' objects) compare with the image's (`truth`, the
    sample's attributes): counts of objects mentioned, hallucinated (no true object of that shape was matched),
    and among those present, the ones with a stated colour or position that is wrong."""
    matching = match_objects(truth["objects"], said)
    matched = {j: t for t, j in zip(truth["objects"], matching) if j is not None}
    present = {j: matched[j] for j, p in enumerate(said) if j in matched and matched[j]["shape"] == p["shape"]}
    return {"mentioned": len(said), "hallucinated": len(said) - len(present), "present": len(present),
            "colour_wrong": sum(said[j].get("colour") not in (None, t["colour"]) for j, t in present.items()),
            "position_wrong": sum(said[j].get("position") not in (None, t["position"]) for j, t in present.items()),
            "invented": [" ".join(filter(None, (p.get("colour"), p["shape"]))) for j, p in enumerate(said)
                         if j not in present]}
