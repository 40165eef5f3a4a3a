"""A simulated Flutter world for the live demo and tests (pure Python, no Kafka).

>>> from flitfeed.demo import World, Scoreboard
>>> world = World(seed=42, start=1_700_000_000.0)
>>> board = Scoreboard(world)
"""

from flitfeed.demo.scoreboard import Scoreboard
from flitfeed.demo.world import CONVERSATION_TOPICS, DEFAULT_TOPICS, ConversationTopic, World

__all__ = ["CONVERSATION_TOPICS", "DEFAULT_TOPICS", "ConversationTopic", "Scoreboard", "World"]
