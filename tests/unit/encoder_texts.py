"""Short flit texts the encoder tests embed: four topics, a near pair (the two worm posts) and a one-letter text."""

TEXTS = [
    "After the rain the lawn was full of earthworms, I pulled out three before breakfast.",
    "Worm tip: drum your feet on the soil and the worms come up thinking it is raining.",
    "The storm last night shook the hawthorn hedge; I tucked my head under my wing until dawn.",
    "Sang a three-note whistle from the church spire for an hour.",
    "Day five of the journey to West Africa: eight hundred kilometres flown.",
    "x",
]
