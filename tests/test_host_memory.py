"""train.py --mmap-threshold: glibc gives freed activations back to the system (host_memory.py)."""
import json
import subprocess
import sys

import pytest

import host_memory
import train

# One process: raise glibc's adaptive mmap threshold the way a training step does (free one large mmapped
# block), allocate 32 tensors of 4 MiB, each followed by a small one that stays (as a step's small tensors
# do), free the large ones and report how much resident memory that gave back.
FRAGMENTING_PROCESS = """
import json, os, sys
import torch
import host_memory

def resident_mib():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20

applied = host_memory.set_mmap_threshold(float(sys.argv[1]))
torch.empty(2 ** 21).fill_(1)
large, small = [], []
for _ in range(32):
    large.append(torch.empty(2 ** 20).fill_(1))
    small.append(torch.empty(1024).fill_(1))
before = resident_mib()
del large
print(json.dumps({'applied': applied, 'returned_mib': before - resident_mib()}))
"""


def returned_mib(threshold_mib):
    result = subprocess.run([sys.executable, '-c', FRAGMENTING_PROCESS, str(threshold_mib)], capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux') or host_memory._glibc_mallopt() is None,
                    reason='glibc only')
def test_a_fixed_mmap_threshold_returns_freed_tensors_that_the_adaptive_one_keeps():
    adaptive = returned_mib(0)
    fixed = returned_mib(1)
    assert adaptive['applied'] is False and fixed['applied'] is True
    assert adaptive['returned_mib'] < 32       # glibc kept the 128 MiB freed in its heap
    assert fixed['returned_mib'] > 120         # the 32 x 4 MiB went back to the system


def test_zero_leaves_the_c_library_alone(monkeypatch):
    monkeypatch.setattr(host_memory, '_glibc_mallopt', lambda: pytest.fail('mallopt must not be called'))
    assert host_memory.set_mmap_threshold(0) is False


def test_train_passes_the_threshold_and_rejects_what_glibc_refuses(toy_root, tmp_path, monkeypatch, capsys):
    applied = []
    monkeypatch.setattr(host_memory, 'set_mmap_threshold', lambda mib: applied.append(mib) or True)
    monkeypatch.chdir(tmp_path)
    fast = ['--with-pretrain', '0', '-b', '1', '-j', '0', '-mni', '3', '--epoch-size', '1', '--epochs', '1',
            '--device', 'cpu']
    train.main([toy_root, '--name', 'mmap', '--mmap-threshold', '4'] + fast)
    assert applied == [4.0]
    with pytest.raises(SystemExit):
        train.build_parser().parse_args([toy_root, '--name', 'mmap', '--mmap-threshold', '64'])
    assert "--mmap-threshold: must be a finite number in [0, 32], got '64'" in capsys.readouterr().err
