"""`evaluate`'s steps: every protocol a model can be evaluated under has its scoring step."""
from bmip.grid import TRAINED_BY
from bmip.engine.evaluate import SCORING


def test_every_protocol_has_a_scoring_step():
    assert set(SCORING) == set(TRAINED_BY)
