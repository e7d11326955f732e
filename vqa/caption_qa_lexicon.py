"""Word lists of the caption-question rules (`vqa.caption_qa`): the COCO-QA-style lexicons (colours,
numbers, people, animals, objects, places, activity verbs) and those of the broader questions (the objects
"Is there ...?" asks about, person words, subject names), with the word tests built on them."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from .caption_qa_words import EVIDENCE


# ---- lexicons ----------------------------------------------------------------------------------------
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _plural(words: Iterable[str]) -> dict[str, str]:
    irregular = {"man": "men", "woman": "women", "child": "children", "person": "people", "sheep": "sheep",
                 "bus": "buses", "dress": "dresses", "glass": "glasses", "puppy": "puppies", "baby": "babies"}
    return {w: irregular.get(w, w + "s") for w in words}


COLOURS = _words("black white brown red blue green yellow orange pink purple gray grey tan")
COLOUR_ALIASES = {"grey": "gray"}
COLOUR_GROUPS = [_words("brown tan golden blond blonde"), _words("gray grey silver")]

NUMBERS = _words("two three four five six seven eight nine ten")

PEOPLE = {  # word -> (sex, age); None matches anything
    "man": ("m", "adult"), "men": ("m", "adult"), "guy": ("m", "adult"), "guys": ("m", "adult"),
    "woman": ("f", "adult"), "women": ("f", "adult"), "lady": ("f", "adult"), "ladies": ("f", "adult"),
    "boy": ("m", "child"), "boys": ("m", "child"), "girl": ("f", "child"), "girls": ("f", "child"),
    "child": (None, "child"), "children": (None, "child"), "kid": (None, "child"), "kids": (None, "child"),
    "baby": (None, "child"), "toddler": (None, "child"), "toddlers": (None, "child"),
    "person": (None, None), "people": (None, None), "someone": (None, None), "player": (None, None),
    "players": (None, None), "biker": (None, None), "bikers": (None, None), "skier": (None, None),
    "surfer": (None, None), "climber": (None, None), "rider": (None, None), "skateboarder": (None, None),
    "snowboarder": (None, None), "swimmer": (None, None), "runner": (None, None), "cyclist": (None, None),
    "teenager": (None, None), "teen": (None, None), "adult": (None, "adult"), "crowd": (None, None),
}
WHO_ANSWERS = _words("man woman boy girl child baby")   # who-answers: singular, specific enough to choose
_SINGULAR_ANIMALS = _words("dog cat horse bird cow sheep puppy goat duck bull camel")
ANIMALS = _SINGULAR_ANIMALS | frozenset(_plural(_SINGULAR_ANIMALS).values())
SUBJECTS = frozenset(PEOPLE) | ANIMALS
PLURALS = frozenset(_plural(_SINGULAR_ANIMALS | _words("man woman child person boy girl kid baby")).values()) | \
    _words("people guys ladies players bikers toddlers")

_THINGS = _words("""ball frisbee stick bike bicycle skateboard surfboard snowboard kite toy rope horse wave
    camera guitar drum microphone umbrella bag backpack bottle cup sign flag bucket shovel bat racket net hoop
    basketball football soccer volleyball tennis baseball hockey golf motorcycle scooter boat kayak canoe
    raft car truck bus train sled skis swing slide tire leash hat flower flowers book phone newspaper food
    pizza sandwich ice cream water pole fish toys balls sticks""")
OBJECTS = _THINGS | ANIMALS
OBJECT_GROUPS = [_words("bike bicycle motorcycle"), _words("ball balls basketball football soccer volleyball "
                 "tennis baseball"), _words("stick sticks pole bat"), _words("toy toys ball"),
                 _words("frisbee disc toy"), _words("boat kayak canoe raft"), _words("dog puppy dogs"),
                 _words("horse pony"), _words("surfboard board"), _words("skateboard board"),
                 _words("snowboard board"), _words("car truck vehicle")]
TRANSITIVE = _words("riding holding carrying throwing catching chasing kicking pulling pushing eating "
                    "playing fetching hitting drinking climbing")
COLOUR_NOUNS = ANIMALS | _THINGS | _words("""shirt jacket coat dress hat helmet shorts pants jeans top
    uniform shoes boots skirt sweater hoodie swimsuit suit cap scarf tent building door wall fence jersey
    outfit costume vest shirts jackets uniforms hats helmets dresses""")

PLACES = _words("""grass field lawn yard park beach sand shore ocean sea water waves pool lake river stream
    creek pond snow mountain hill slope street road sidewalk city pavement track trail path dirt mud woods
    forest stage rocks rock cliff floor bed couch bench playground fountain desert""")
PLACE_GROUPS = [_words("grass field lawn yard park meadow backyard playground"),
                _words("beach sand shore ocean sea water waves surf"),
                _words("water pool lake river stream creek pond ocean sea fountain waves"),
                _words("snow mountain hill slope snowy"), _words("street road sidewalk city pavement crosswalk"),
                _words("dirt trail path track mud woods forest"), _words("rocks rock cliff mountain hill"),
                _words("floor bed couch bench"), _words("sand desert dirt")]
PLACE_PREPS = _words("in on at through across along near into down by under over around")

VERBS = _words("""running jumping swimming riding climbing walking sitting standing playing skiing surfing
    skateboarding snowboarding biking dancing singing eating drinking reading fishing hiking throwing
    catching kicking chasing carrying holding laying lying sleeping digging splashing wading pulling pushing
    fetching smiling laughing hugging resting racing crawling rolling skating performing posing""")
VERB_GROUPS = [_words("running racing jogging chasing sprinting"), _words("jumping leaping bouncing"),
               _words("swimming wading splashing"), _words("walking hiking strolling"),
               _words("sitting resting laying lying sleeping"), _words("riding biking cycling"),
               _words("playing chasing fetching running jumping catching throwing kicking"),
               _words("smiling laughing posing"), _words("standing posing waiting")]
NOT_DOING = _words("holding carrying pulling pushing throwing catching kicking chasing hitting fetching")  # need objects
DETERMINERS = _words("a an the his her their its some one")
STOPS = _words("and while as with which who that")


# ---- lexicons of the broader questions -----------------------------------------------------------------
PRESENCE = {name: _words(names) for name, names in {  # object -> the words that name it ("is there")
    "man": "man men guy guys gentleman gentlemen", "woman": "woman women lady ladies", "boy": "boy boys",
    "girl": "girl girls", "child": "child children kid kids toddler toddlers", "baby": "baby babies infant infants",
    "dog": "dog dogs puppy puppies", "cat": "cat cats kitten kittens", "horse": "horse horses pony ponies",
    "bird": "bird birds", "cow": "cow cows cattle", "sheep": "sheep lamb lambs", "duck": "duck ducks",
    "ball": "ball balls", "frisbee": "frisbee frisbees", "stick": "stick sticks", "toy": "toy toys",
    "bike": "bike bikes bicycle bicycles", "motorcycle": "motorcycle motorcycles motorbike motorbikes",
    "car": "car cars", "truck": "truck trucks", "bus": "bus buses",
    "boat": "boat boats kayak kayaks canoe canoes raft rafts sailboat sailboats",
    "skateboard": "skateboard skateboards", "surfboard": "surfboard surfboards", "sled": "sled sleds",
    "kite": "kite kites", "umbrella": "umbrella umbrellas", "guitar": "guitar guitars", "camera": "camera cameras",
    "sign": "sign signs", "flag": "flag flags", "tent": "tent tents", "bench": "bench benches",
    "rope": "rope ropes", "fountain": "fountain fountains",
}.items()}
PRESENCE_PLURAL = {**{name: name + "s" for name in PRESENCE}, "man": "men", "woman": "women", "child": "children",
                   "baby": "babies", "sheep": "sheep", "bus": "buses", "bench": "benches"}
PRESENCE_RELATED = {name: _words(words) for name, words in {  # words that make a "no" unsafe (beyond EVIDENCE)
    "ball": "basketball football soccer volleyball baseball tennis rugby softball kickball golf toy toys game",
    "toy": "ball balls frisbee doll dolls stuffed teddy plush", "frisbee": "disc toy toys",
    "stick": "branch branches twig twigs pole poles bat",
    "bike": "motorcycle motorbike bmx cyclist cyclists biker bikers bicyclist bicyclists biking cycling",
    "motorcycle": "bike bikes motocross biker bikers moped scooter",
    "car": "vehicle vehicles truck jeep suv van taxi", "truck": "vehicle vehicles car cars jeep van",
    "bus": "vehicle vehicles", "boat": "ship ships paddle paddling rowing dock",
    "skateboard": "skateboarder skateboarders skateboarding skater skaters skate skating board ramp",
    "surfboard": "surfer surfers surfing board boogie bodyboard", "sled": "sledding sledge toboggan",
    "guitar": "guitarist band instrument instruments musician bass",
    "camera": "photographer photographers photo photos picture pictures photograph filming",
    "umbrella": "parasol", "tent": "camp camping campsite",
    "bird": "pigeon pigeons seagull seagulls gull gulls duck ducks goose geese chicken chickens parrot",
    "duck": "bird birds goose geese", "cow": "bull bulls calf calves ox", "sheep": "goat goats",
    "horse": "rider rodeo saddle horseback jockey donkey", "dog": "leash", "cat": "kitty",
    "sign": "banner banners poster posters billboard", "flag": "banner",
}.items()}
ANIMAL_OBJECTS = _words("dog cat horse bird cow sheep duck")
ANIMAL_WORDS = _words("animal animals pet pets creature creatures")
_ANYONE, _MALE, _FEMALE = (None, None), ("m", None), ("f", None)
PERSON_WORDS = {**PEOPLE, **{w: _ANYONE for w in (
    "someone somebody anyone persons individual individuals family families couple couples team teams audience "
    "spectators fans tourists worker workers performer performers musician musicians band dancer dancers hiker "
    "hikers skiers surfers climbers swimmers riders runners cyclists bicyclist bicyclists motorcyclist "
    "motorcyclists teenagers teens adults athlete athletes student students pedestrian pedestrians friend "
    "friends owner owners handler trainer officer police soldier soldiers jockey wrestler wrestlers fisherman "
    "fishermen lifeguard vendor shoppers onlookers photographer referee coach clown hand hands finger fingers "
    "babies infant infants youth youths snowboarders skateboarders").split()},
    **{w: _MALE for w in "he his him male males brother brothers cowboy cowboys".split()},
    **{w: _FEMALE for w in "she her hers female females sister sisters cowgirl cowgirls".split()},
    **{w: ("m", "adult") for w in "gentleman gentlemen father dad husband boyfriend groom".split()},
    **{w: ("f", "adult") for w in "mother mom mum wife girlfriend bride".split()},
    **{w: ("m", "child") for w in "son sons".split()}, **{w: ("f", "child") for w in "daughter daughters".split()},
}
PERSON_OBJECTS = _words("man woman boy girl child baby")
PEOPLE_PLURALS = PLURALS - frozenset(_plural(_SINGULAR_ANIMALS).values()) | _words(
    "teenagers teens adults friends skiers surfers climbers riders swimmers runners cyclists dancers workers "
    "musicians hikers snowboarders skateboarders")   # what a people count counts ("two young men")

SUBJECT_NAMES = {**{w: w for w in _SINGULAR_ANIMALS}, **{p: s for s, p in _plural(_SINGULAR_ANIMALS).items()},
                 "puppy": "dog", "puppies": "dog",
                 **{w: w for w in "man woman boy girl child baby person people player skier surfer climber rider "
                    "skateboarder snowboarder swimmer runner cyclist biker".split()},
                 "men": "man", "guy": "man", "guys": "man", "women": "woman", "lady": "woman", "ladies": "woman",
                 "boys": "boy", "girls": "girl", "children": "child", "kid": "child", "kids": "child",
                 "toddler": "child", "toddlers": "child", "players": "player", "bikers": "biker"}
ACTION_SKIP = _words("tennis soccer hockey golf ice cream")   # modifiers read as objects ("a soccer ball")
NO_ARTICLE = _words("toys balls sticks flowers skis water food pizza fish")


def _person(word: str) -> tuple[str | None, str | None]:
    return PERSON_WORDS[word]


def people_compatible(a: str, b: str) -> bool:
    """Whether person words `a` and `b` could name the same person (sex and age, None matching any)."""
    return all(x is None or y is None or x == y for x, y in zip(_person(a), _person(b), strict=True))


def with_stems(words: Iterable[str]) -> set[str]:
    """`words` and the stems of their possessives ("man's" -> man)."""
    words = set(words)
    return words | {w[:-2] for w in words if w.endswith("'s")}


def possessives(words: Iterable[str]) -> frozenset[str]:
    """`words` and their possessives (man -> man's), as the tokenizer keeps them."""
    return frozenset(w for word in words for w in (word, word + "'s"))


@cache
def subject_words(choice: str) -> frozenset[str]:
    """The words that could name the subject `choice`: it, its names (puppies -> dog), and for a person,
    any person word it could be (a "player" could be a man)."""
    words = {choice, *PRESENCE.get(choice, ()), *(w for w, name in SUBJECT_NAMES.items() if name == choice)}
    if choice in PERSON_WORDS:
        words |= {w for w in PERSON_WORDS if people_compatible(choice, w)}
    return possessives(words)


def could_name_subject(choice: str, words: set[str]) -> bool:
    """Whether the captions (`words`) could be about the subject `choice` (`subject_words`)."""
    return not subject_words(choice).isdisjoint(words)


@cache
def absence_blockers(obj: str) -> frozenset[str]:
    """The words that rule out a "no" to "Is there a `obj`?": its names, its related and evidence words,
    any animal word for an animal, any person word it could be for a person (and their possessives)."""
    words = PRESENCE[obj] | PRESENCE_RELATED.get(obj, frozenset()) | EVIDENCE.get(obj, frozenset())
    if obj in ANIMAL_OBJECTS:
        words |= ANIMAL_WORDS
    if obj in PERSON_OBJECTS:
        words |= {w for w in PERSON_WORDS if people_compatible(obj, w)}
    return possessives(words)


def absent(obj: str, words: set[str]) -> bool:
    """Whether "Is there a `obj`?" is safely "no" for captions holding `words`: none names or suggests it."""
    return absence_blockers(obj).isdisjoint(words)
