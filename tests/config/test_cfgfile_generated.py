"""Grammar-generated valid configs always parse (no oracle needed)."""

from hypothesis import HealthCheck, given, settings

from cfgstrategies import valid_configs
from pyxl.config.cfgfile import parse, parse_tree


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(valid_configs())
def test_grammar_sentences_parse(data):
    cfg = parse(data, "t.cfg", warn=lambda line: None)
    tree = parse_tree(data, "t.cfg")
    assert len(tree.children) == len(cfg.order)
    for stmt in tree.children:
        assert stmt.children[0].value in cfg
