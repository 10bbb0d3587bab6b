"""The vocabulary the t2i `text` op draws from: common English words and short phrases, written for this
project (no third-party list, no licence to carry). Only ASCII letters, digits, spaces and `! & ' -`, which
every bundled font has glyphs for; never a double quote, which the prompt uses to quote the string.
"""

WORDS = tuple(dict.fromkeys("""
apple art autumn baby bake beach bear bee bell berry bike bird blue boat book bottle bread breeze bridge
bright brother brush bubble butter button cake camera candle candy castle cat cheese cherry chess city
clock cloud coast coffee comet cookie corn cotton cozy craft cream crown cup dance dawn daisy desert dinner
dog dolphin door dragon dream drum duck eagle earth echo egg energy field fire fish flame flower fog
forest fox fresh friend frog fruit galaxy garden ghost gift ginger glass globe gold grape grass green guitar
happy harbor harvest heart hello honey hope horse house ice island jam jazz jelly journey joy jungle kettle
key kind king kite lake lamp laugh leaf lemon letter light lily lion magic mango maple market meadow melon
milk mint mirror moon morning mountain music night noodle north ocean olive orange orchid owl paint palm
panda paper park party peach pearl pencil pepper piano picnic pillow pine pizza planet plum pocket poem
pond prince pumpkin puzzle queen quiet rabbit rain rainbow river road robot rocket rose ruby sail salad
salt sand school sea seed shadow shell ship shoe silver sky sleep smile snow soap soup south spark spice
spring star stone storm story street sugar summer sun sunset sweet swim table tea tiger toast tomato tower
train travel tree tulip turtle umbrella unicorn valley velvet village violet voyage wagon walk water wave
whale wild wind window winter wish wolf wonder wood world yellow yoga zebra zen open closed sale new free
welcome thanks love peace home coffee shop bakery library museum studio cinema hotel garage kitchen
exit enter stop push pull north east west
""".split()))

PHRASES = (
    "hello world", "good morning", "good night", "happy birthday", "thank you", "see you soon", "open daily",
    "fresh bread", "hot coffee", "sale today", "welcome home", "best friends", "summer vibes", "stay cool",
    "keep calm", "just do it", "dream big", "be kind", "love you", "free wifi", "no parking", "exit only",
    "fresh fruit", "ice cream", "pizza night", "live music", "book club", "garden party", "lost and found",
    "open late", "grand opening", "sweet home", "rock and roll", "black and white", "salt and pepper",
    "sun and moon", "fish and chips", "bread & butter", "coffee & tea", "rise and shine", "make it happen",
    "one more day", "time to relax", "let's go", "don't stop", "it's magic", "catch the wave", "city lights",
    "starry night", "winter is here", "spring sale", "autumn leaves", "morning tea", "north star",
    "blue sky", "green tea", "red alert", "golden hour", "silver lining", "happy new year", "merry christmas",
    "big news", "new arrivals", "last chance", "hand made", "since 1987", "room 42", "table for two",
    "chapter one", "the end", "top secret", "hello again", "well done", "try again", "level up",
    "game over", "press start", "high score", "well-being", "self-care", "low-key", "up-to-date",
)
