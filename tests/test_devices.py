"""The one device setting (gensar_lib.devices): resolution, clear errors, and no cache key depends on it."""
import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from gensar_lib.config import REPO_ROOT, ConfigError, fingerprint, load_profile
from gensar_lib.devices import end_processes, resolve_device
from gensar_lib.stages import STAGES


def test_auto_is_the_cpu_without_cuda_and_the_environment_sets_the_profile(monkeypatch):
    monkeypatch.delenv("GENSAR_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected == resolve_device("auto").type
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("GENSAR_DEVICE", "cpu")
    assert load_profile("tiny").device == "cpu" and resolve_device() == torch.device("cpu")
    assert load_profile("tiny", device="auto").device == "auto"  # an explicit override wins


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
@pytest.mark.parametrize("value", ["cuda", "cuda:1"])
def test_unusable_cuda_names_the_setting_and_value(value):
    with pytest.raises(ConfigError, match=rf"device = '{value}' \(profile.device or \$GENSAR_DEVICE\) but CUDA"):
        resolve_device(value)


@pytest.mark.parametrize("value", ["gpu", "cuda:x", "CPU", ""])
def test_malformed_setting_is_refused_by_the_profile(monkeypatch, value):
    monkeypatch.delenv("GENSAR_DEVICE", raising=False)
    with pytest.raises(ConfigError, match=f"device = '{value}' .*(is not a device setting|allowed: a non-empty text)"):
        load_profile("tiny", device=value)
    monkeypatch.setenv("GENSAR_DEVICE", value or "cuda:")
    with pytest.raises(ConfigError, match="is not a device setting"):
        resolve_device()


def test_no_cache_key_depends_on_the_device():
    for name in ("tiny", "small", "paper"):
        auto = load_profile(name, device="auto")
        cpu = replace(auto, device="cpu")
        for stage in STAGES.values():
            assert stage.config(auto) == stage.config(cpu), stage.name
            assert "device" not in str(stage.config(auto)), stage.name
        assert fingerprint(auto) == fingerprint(cpu)  # the ablation's profile_key


def test_the_device_field_leaves_the_committed_ablation_current():
    committed = json.loads((REPO_ROOT / "figures" / "06_identifier_ablation" / "ablation_synthetic_small.json")
                           .read_text())
    assert committed["profile_key"] == fingerprint(load_profile("small", device="cpu"))


def test_end_processes_destroys_the_process_group_and_does_nothing_without_one(tmp_path):
    end_processes()  # no group: nothing to do
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert torch.distributed.is_initialized()
    end_processes()
    assert not torch.distributed.is_initialized()


def test_a_process_that_imports_the_module_ends_its_group_at_exit(tmp_path):
    """The group is destroyed by the exit handler (it runs before a handler registered ahead of the import)."""
    script = (f"import atexit, torch\n"
              f"atexit.register(lambda: print('group at exit:', torch.distributed.is_initialized()))\n"
              f"import gensar_lib.devices\n"
              f"torch.distributed.init_process_group('gloo', init_method='file://{tmp_path / 'store'}', rank=0, "
              f"world_size=1)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "group at exit: False"
