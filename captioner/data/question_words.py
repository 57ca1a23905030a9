"""The word lists the question generator's rules read (:mod:`captioner.data.question_rules`): nouns and the
answer and COCO category each means, places, verbs, and the words that block a POPE "no"."""

from __future__ import annotations

from .. import lexicon
from ..lexicon import NUMBER_WORDS

# ---------------------------------------------------------------- lexicon

# "category: answer synonym ..., answer ...": the first word of a group is the answer every word of the group maps
# to; "_" joins the words of a multi-word noun. "-" marks nouns outside the 80 COCO categories. Plurals are made.
NOUNS = """
person: man guy gentleman male, woman lady female, boy, girl, child kid, baby infant toddler, person someone adult
person: player, skateboarder, skater, surfer, skier, snowboarder, rider, biker cyclist bicyclist, batter, pitcher
person: catcher, umpire, chef, worker, officer policeman, soldier, tourist, athlete, swimmer, runner, dancer, climber
person: hiker, teenager teen, student, crowd, couple, family, team, musician, guitarist, spectator, motorcyclist
person: mother mom, father dad, friend, bride, groom, goalie, racer, clown, photographer, owner, referee, jockey
person: coach, vendor, wrestler, cheerleader, teammate, pedestrian, shopper, fan
bicycle: bicycle bike | car: car taxi cab suv sedan | motorcycle: motorcycle motorbike motor_bike dirt_bike
airplane: airplane plane jet airliner aircraft | bus: bus double_decker double_decker_bus
train: train locomotive | truck: truck pickup_truck | boat: boat ship sailboat yacht ferry, canoe, kayak
traffic light: traffic_light stoplight | fire hydrant: fire_hydrant hydrant | stop sign: stop_sign
parking meter: parking_meter | bench: bench | bird: bird, duck, goose, seagull gull, pigeon, swan, parrot, owl
cat: cat kitten kitty | horse: horse pony foal | sheep: sheep lamb | cow: cow cattle bull calf | elephant: elephant
dog: dog puppy pup poodle terrier collie retriever lab labrador dalmatian greyhound beagle husky pug bulldog spaniel
dog: dog dachshund german_shepherd sheepdog chihuahua | bear: bear | zebra: zebra | giraffe: giraffe
backpack: backpack | umbrella: umbrella parasol | handbag: purse handbag | tie: tie necktie | suitcase: suitcase
frisbee: frisbee | skis: skis ski | snowboard: snowboard | sports ball: ball soccer_ball tennis_ball | kite: kite
baseball bat: bat baseball_bat | baseball glove: mitt baseball_glove | skateboard: skateboard | surfboard: surfboard
tennis racket: racket racquet tennis_racket | bottle: bottle | wine glass: wine_glass | cup: cup mug | fork: fork
knife: knife | spoon: spoon | bowl: bowl | banana: banana | apple: apple | sandwich: sandwich | orange: orange
broccoli: broccoli | carrot: carrot | hot dog: hot_dog hotdog | pizza: pizza | donut: donut doughnut | cake: cake
chair: chair | couch: couch sofa | potted plant: potted_plant houseplant | bed: bed | dining table: table
toilet: toilet | tv: tv television | laptop: laptop laptop_computer | mouse: mouse | remote: remote remote_control
keyboard: keyboard | cell phone: phone cellphone cell_phone smartphone | microwave: microwave | oven: oven stove
toaster: toaster | sink: sink | refrigerator: refrigerator fridge | book: book | clock: clock | vase: vase
scissors: scissors | teddy bear: teddy_bear | hair drier: hair_dryer hair_drier | toothbrush: toothbrush
-: shirt t-shirt tshirt, jacket, coat, hat, cap, helmet, dress, skirt, jersey, uniform, shorts, pants trousers, jeans
-: sunglasses, glasses, scarf, costume, suit, swimsuit, bikini, sweater, vest, wetsuit, goggles, apron, glove, boots
-: stick, rope, toy, leash, collar, camera, guitar, microphone, bag, basket, box, blanket, towel, flag, sign, pole
-: tire, bucket, net, sled, wagon, cart, stroller, tent, van, scooter, glass, plate, tray, food, fish, goat
-: grass, water, snow, beach, street, road, field, park, sand, ocean, lake, river, pool, sidewalk, mountain, hill
-: rock, tree, wall, fence, building, stage, ramp, trail, path, track, tracks, bridge, yard, lawn, dirt, mud, puddle
-: fountain, city, market, store, restaurant, airport, runway, station, platform, court, slope, ice, sky, air, woods
-: forest, room, kitchen, bathroom, bedroom, living_room, desk, counter, floor, shelf, ground, pond, wave, shore, dock
-: pier, playground, slide, swing, trampoline, window, door, doorway, stairs, porch, highway, intersection, garden
-: parking_lot, alley, hillside, cliff, desert, pasture, enclosure, zoo, cage, bathtub tub, shower, bus_stop
-: plant, house, mirror, rail, railing, ledge, stream, hurdle, waterfall, harness, raft, tunnel, tower, backyard
-: racetrack, curb, branch, log, sweatshirt, hose, unicycle, sprinkler, mound, carriage, headband, carpet, sea, gate
-: wheelchair, creek, newspaper, hoop, deck, bandanna, trunk, shoreline, hoodie, staircase, pipe, balloon, crosswalk
-: walkway, pavement, stadium, parachute, monitor, computer, atv, jeep, candle, balcony, rug, violin, drum, piano, mat
-: valley, flower, courtyard, pan, barn, roof, fireplace, cave, dune, snowball, driveway, ladder, hallway, church
-: pillow, rink, tricycle, canal, boardwalk, lamp, puck, shoe, bush, camel, fruit, office, grill, overpass, garage
-: soccer, football, baseball, basketball, tennis, volleyball, cricket, golf, hockey, rugby, softball, surf, monkey
-: deer, headphones, clothes, bubble
"""
ANIMATE = frozenset("person bird cat dog horse sheep cow elephant bear zebra giraffe".split())
PLACES = frozenset(
    """bed table couch chair bench toilet sink desk counter floor shelf plate tray grass water snow beach
street road field park sand ocean lake river pool sidewalk mountain hill rock tree ramp trail path track tracks bridge
yard lawn dirt mud puddle fountain city market store restaurant airport runway station platform court slope ice sky air
woods forest room kitchen bathroom bedroom living_room ground pond wave shore dock pier playground stage trampoline
highway intersection garden parking_lot alley hillside cliff desert pasture enclosure zoo cage bathtub shower bus_stop
car truck bus boat train ledge stream waterfall raft tunnel backyard racetrack curb log mound carpet sea creek deck
shoreline staircase walkway pavement stadium balcony rug mat valley courtyard roof cave dune driveway hallway church
rink canal boardwalk bush office garage surf house barn""".replace("_", " ").split()
)
# "words: categories": a caption with one of the words may hide objects of these categories, so no POPE "no" names
# them ("animals" may be dogs, a kitchen has an oven). "_" joins the words of a category.
IMPLIES = """
animal animals pet creature creatures wildlife: bird cat dog horse sheep cow elephant bear zebra giraffe
vehicle vehicles traffic van jeep jeeps atv: car bus truck motorcycle bicycle
scooter moped: motorcycle
plant plants: potted_plant
food meal dish lunch dinner breakfast dessert snack plate tray: banana apple sandwich orange broccoli carrot hot_dog
food meal dish lunch dinner breakfast dessert snack plate tray: pizza donut cake fork knife spoon bowl cup bottle
food meal dish lunch dinner breakfast dessert snack plate tray: wine_glass dining_table
glass drink wine: wine_glass
fruit fruits: banana apple orange
vegetable vegetables veggies: broccoli carrot
stuffed: teddy_bear
furniture room: chair couch bed dining_table potted_plant tv clock vase book
bag luggage: handbag backpack suitcase
kitchen: oven microwave refrigerator sink toaster bowl cup bottle knife dining_table chair
bathroom: toilet sink toothbrush hair_drier
bedroom: bed
glove gloves: baseball_glove
office desk computer computers monitor screen: laptop keyboard mouse tv chair cell_phone book cup
street road city intersection sidewalk parking highway downtown crosswalk town: car truck bus traffic_light person
street road city intersection sidewalk parking highway downtown crosswalk town: bicycle motorcycle stop_sign
street road city intersection sidewalk parking highway downtown crosswalk town: parking_meter fire_hydrant bench
beach ocean surf shore: person umbrella surfboard kite boat
baseball: baseball_bat baseball_glove sports_ball person
tennis: tennis_racket sports_ball person
soccer football basketball volleyball rugby game: sports_ball person
ski skiing slope snow: skis snowboard person
airport runway: airplane truck person
station platform railroad railway: train person
lake river harbor dock pier marina: boat person bird
he she his her him they their them someone somebody wearing holding throwing swinging: person
skiing surfing skateboarding snowboarding park field crowd team match race stadium market: person
"""
NUMBERS = NUMBER_WORDS | {str(i): i for i in range(2, 11)}  # as words and as digits
WHERE = ("on", "in", "at", "inside", "into", "onto", "through", "across", "along", "down", "atop")
WHAT = ("in front of", "next to", "near", "beside", "by", "under", "underneath", "beneath", "behind", "over")
VERBS = """sit stand lie lay rest sleep wait pose play walk run swim ride ski surf skate skateboard snowboard jump float
fly graze eat drink kneel crouch climb drive cross wade splash dig roll hang relax lounge dance perform work cook read
look watch stare hold carry wear throw catch chase pull push kick hit use feed pet hug cut swing bite grab lick tow lead
paddle row make sniff lift drag follow approach prepare wash brush take serve toss balance fight race travel move sail
reach sing smile laugh talk chew stretch shake blow hike jog lean perch cuddle leap dive bounce kiss sled
slide crawl trot sprint glide hop wander stroll march pour fetch retrieve shoot open""".split()
STATIC = frozenset(
    "sitting standing lying laying resting sleeping waiting posing leaning parked perched seated".split()
)
PARTICIPLES = frozenset("parked perched seated displayed stacked placed docked stopped".split())
DOUBLED = frozenset("sit run swim dig hug pet cut hit jog grab drag stop skip shop".split())  # sit -> sitting
DETERMINERS = (
    lexicon.DETERMINERS
    | frozenset("some several many his her their its my our your each every both few another".split())
    | NUMBERS.keys()
)
QUANTIFIERS = frozenset(
    "group herd flock bunch couple pair crowd lot lots number team pack line row set pile stack "
    "variety slice piece bite chunk family ball balls groups herds flocks slices pieces".split()
)
FUNCTION = frozenset(
    "of with without on in at near under beside by next to front into onto through across along down "
    "up over behind around from for toward towards past above below between among inside outside "
    "underneath beneath atop against off out while as like and or but is are was were be being been "
    "has have had does do it they he she them him who which that what where there here 's".split()
)
BLOCKERS = frozenset(
    "no not without toy toys stuffed fake statue statues sculpture figurine cartoon drawing painting "
    "poster mural replica shaped like costume".split()
)
PICTURES = frozenset("picture pictures photo photos photograph image images reflection".split())
NOT_COUNTED = frozenset("other more additional extra".split())
ING_NOUNS = frozenset(
    "building ceiling clothing painting railing awning siding icing frosting topping wedding ring "
    "string thing something nothing anything everything evening morning king wing swing sibling "
    "lightning landing crossing parking opening bedding dressing pudding filling".split()
)
COMPOUND_ED = frozenset("covered filled topped lined capped".split())  # "a snow covered hill"
ADJ_ED = frozenset("haired eyed colored coloured striped spotted shaped sized legged faced headed".split())
PREFIXES = [
    p.split()
    for p in (
        "there is",
        "there are",
        "this is",
        "here is",
        "a picture of",
        "a photo of",
        "an image of",
        "a close up of",
        "close up of",
        "a closeup of",
        "a photograph of",
        "a view of",
        "picture of",
        "photo of",
        "image of",
    )
]
