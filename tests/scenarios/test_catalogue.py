"""The sport-scenario catalogue: what ships, user files that extend it, and every pinned error."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusion_edge.errors import ScenarioError
from fusion_edge.scenarios import ACTIONS, Scenario, get_scenario, load_catalogue

VALID = """
[futsal]
sport = "futsal"
description = "5v5 futsal"
teams = 2
players = 5
duration_s = 120
pitch_m = [40.0, 20.0]
intensity = 0.9
quality = [0.4, 0.9]
action_mix = { dribbling = 3.0, sliding = 0.0 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def test_shipped_catalogue_has_every_advertised_scenario() -> None:
    cat = load_catalogue()
    for name in ("drill", "rondo", "5v5", "11v11"):
        assert name in cat
        assert cat[name].sport == "football"
    assert any(s.sport != "football" for s in cat.values()), "no non-football sport shipped"
    assert cat["11v11"].total_players == 22
    assert cat["5v5"].pitch_m == (40.0, 30.0)
    assert cat["rondo"].pitch_m[0] < cat["11v11"].pitch_m[0]
    for s in cat.values():
        assert isinstance(s, Scenario) and s.name in cat
        assert 0.0 <= s.quality[0] <= s.quality[1] <= 1.0
        assert set(s.action_mix) <= set(ACTIONS)


def test_mix_weights_follow_actions_order_and_default_to_one() -> None:
    drill = get_scenario("drill")
    w = drill.mix_weights()
    assert len(w) == len(ACTIONS)
    assert w[ACTIONS.index("dribbling")] == 2.0
    assert w[ACTIONS.index("running")] == 1.0  # not in the drill's mix
    assert get_scenario("5v5").mix_weights() == [1.0] * len(ACTIONS)


def test_to_json_holds_the_table() -> None:
    d = get_scenario("rondo").to_json()
    assert d["name"] == "rondo"
    assert d["pitch_m"] == [12.0, 12.0]
    assert d["action_mix"]["passing"] == 2.5
    assert set(d) >= {"sport", "teams", "players", "duration_s", "intensity", "quality"}


def test_user_file_extends_and_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        VALID + "\n[5v5]\nteams = 2\nplayers = 4\nduration_s = 60\n"
        "pitch_m = [30, 20]\nintensity = 0.5\n",
    )
    cat = load_catalogue(path)
    assert {"drill", "rondo", "11v11", "futsal", "5v5"} <= set(cat)
    futsal = cat["futsal"]
    assert futsal.sport == "futsal"
    assert futsal.quality == (0.4, 0.9)
    assert futsal.action_mix == {"dribbling": 3.0, "sliding": 0.0}
    assert cat["5v5"].players == 4 and cat["5v5"].pitch_m == (30.0, 20.0)
    assert cat["5v5"].quality == (0.0, 1.0)  # default when the table is silent
    assert get_scenario("futsal", path) == futsal
    # The shipped catalogue is untouched by a user file.
    assert load_catalogue()["5v5"].players == 5


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        (
            "speed = 3\n",
            r"scenario \[futsal\] in .*mine\.toml:12: unknown key\(s\) \['speed'\]; allowed keys",
        ),
        (
            "action_mix = { flying = 1.0 }\n",
            r"mine\.toml:11: unknown action 'flying' in action_mix; known actions: take_off",
        ),
        ("action_mix = { running = -1.0 }\n", r"weight of 'running' must be a number >= 0"),
        ("action_mix = 3\n", r"'action_mix' must be a table"),
        (
            "pitch_m = [400.0, 20.0]\n",
            r"'pitch_m' must be \[length, width\] in metres \(5\.\.200\)",
        ),
        ("pitch_m = [40.0]\n", r"'pitch_m' must be \[length, width\]"),
        ('pitch_m = "big"\n', r"'pitch_m' must be \[length, width\]"),
        ("intensity = 1.5\n", r"'intensity' must be a number in \[0\.0, 1\.0\], got 1\.5"),
        ("teams = 3\n", r"'teams' must be a number in \[1, 2\]"),
        ("players = true\n", r"'players' must be a number"),
        ("players = 2.5\n", r"mine\.toml:11: 'players' must be a whole number in \[1, 30\], got 2\.5"),
        ("teams = 1.5\n", r"'teams' must be a whole number in \[1, 2\], got 1\.5"),
        ("intensty = 0.5\n", r"unknown key\(s\) \['intensty'\]; did you mean 'intensity'\?"),
        ("action_mix = { sprintng = 2.0 }\n", r"unknown action 'sprintng' in action_mix; did you "
                                              r"mean 'sprinting'\?"),
        ("action_mix = { " + ", ".join(f"{a} = 0" for a in ACTIONS) + " }\n",
         r"action_mix switches off every action"),
        ("quality = [0.9, 0.1]\n", r"'quality' must be \[low, high\] with 0 <= low <= high <= 1"),
        ('quality = ["low", 1.0]\n', r"'quality' must be \[low, high\]"),
    ],
)
def test_bad_user_table_is_refused_with_a_pinned_message(
    tmp_path: Path, patch: str, match: str
) -> None:
    # Replace the key if the valid table has it, else add it.
    key = patch.split("=")[0].strip()
    lines = [ln for ln in VALID.splitlines() if not ln.startswith(f"{key} ")]
    path = write(tmp_path, "\n".join(lines) + "\n" + patch)
    with pytest.raises(ScenarioError, match=match):
        load_catalogue(path)


def test_whole_number_written_as_a_float_is_taken(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("players = 5", "players = 5.0"))
    assert load_catalogue(path)["futsal"].players == 5


def test_mix_written_as_shares_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """{ sprinting = 0.4, defending = 0.3, passing = 0.3 } made those three the rarest actions
    (every unlisted one keeps weight 1), without a word."""
    shares = VALID.replace("{ dribbling = 3.0, sliding = 0.0 }",
                           "{ sprinting = 0.4, defending = 0.3, passing = 0.3 }")
    with caplog.at_level("WARNING", logger="fusion_edge.scenarios.catalogue"):
        load_catalogue(write(tmp_path, shares))
    assert "add up to 1, as if they were shares" in caplog.text
    assert "the 9 unlisted actions keep weight 1" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="fusion_edge.scenarios.catalogue"):
        load_catalogue(write(tmp_path, VALID))  # weights, not shares: nothing to say
    assert caplog.text == ""


def test_missing_required_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[tiny]\nteams = 1\nplayers = 2\n")
    with pytest.raises(
        ScenarioError, match=r"\[tiny\].*missing key\(s\) \['duration_s', 'intensity', 'pitch_m'\]"
    ):
        load_catalogue(path)


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[futsal\nteams = 2\n")
    with pytest.raises(ScenarioError, match=r"mine\.toml is not valid TOML"):
        load_catalogue(path)


def test_top_level_value_that_is_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, "futsal = 3\n")
    with pytest.raises(ScenarioError, match=r"'futsal' must be a table like \[futsal\]"):
        load_catalogue(path)


def test_missing_user_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"scenario file .*nope\.toml does not exist; check the path"):
        load_catalogue(tmp_path / "nope.toml")


def test_user_file_that_is_a_folder_binary_or_has_a_bom(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="is a folder; give the TOML file itself"):
        load_catalogue(tmp_path)
    binary = tmp_path / "s.toml"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ScenarioError, match=r"is not text \(not UTF-8\)"):
        load_catalogue(binary)
    bom = tmp_path / "bom.toml"  # saved by a Windows editor
    bom.write_bytes("\ufeff".encode() + b'[tiny]\nsport = "futsal"\ndescription = "x"\nteams = 2\n'
                    b'players = 5\nduration_s = 60\npitch_m = [40.0, 20.0]\nintensity = 0.7\n')
    assert "tiny" in load_catalogue(bom)


@pytest.mark.parametrize(
    ("typo", "meant"), [("5v55", "5v5"), ("rondoo", "rondo"), ("dril", "drill")]
)
def test_typo_in_name_suggests_the_closest(typo: str, meant: str) -> None:
    with pytest.raises(
        ScenarioError, match=rf"unknown scenario '{typo}'\. Did you mean '{meant}'\?"
    ) as exc:
        get_scenario(typo)
    msg = str(exc.value)
    assert "Known scenarios:" in msg and "11v11" in msg and "--scenario-file" in msg


def test_unrelated_name_lists_known_without_guessing() -> None:
    with pytest.raises(ScenarioError, match=r"unknown scenario 'xyzzy'\. Known scenarios: ") as exc:
        get_scenario("xyzzy")
    assert "Did you mean" not in str(exc.value)


def test_typo_suggestion_includes_user_scenarios(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    with pytest.raises(ScenarioError, match=r"Did you mean 'futsal'\?"):
        get_scenario("futsol", path)
