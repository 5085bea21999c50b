"""eval/ablation.py: the entangled-fusion switch used to retrain w/o SDCM, and the table."""
from echo_cli.eval import ablation as A
from echo_cli.model import generator as G


def test_entangled_configs_is_scoped():
    assert G.make_config("micro").fusion == "sdcm"
    with A.entangled_configs():
        assert G.make_config("micro").fusion == "entangled"
        assert G.make_config("micro", audio_input="mel").audio_input == "mel"
    assert G.make_config("micro").fusion == "sdcm"
    try:
        with A.entangled_configs():
            raise RuntimeError("training failed")
    except RuntimeError:
        pass
    assert G.make_config("micro").fusion == "sdcm"      # restored after a failure too


def test_table_puts_ours_beside_the_paper():
    md = A.table({"full": {"rpcc": 0.0123, "sid": 4.2, "var": 0.0118, "lip_sync_pcc": 0.22,
                           "mouth_std_ratio": float("nan")}})
    rows = md.strip().split("\n")
    assert len(rows) == 2 + 5
    full = rows[2].split("|")
    assert "full model" in full[1] and full[2].strip() == "0.012" and full[6].strip() == "–"
    assert full[7].strip() == "0.109"                              # the paper's rPCC beside ours
    assert rows[6].split("|")[2].strip() == "–" and "8.009" in rows[6]   # w/o SDCM not measured: dash
