"""The quick start script, in a reduced form (tiny frames, one iteration), through the same script."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_runs_end_to_end(tmp_path):
    """Run with the interpreter of the tests (QS_PYTHON), whether or not the repository's .venv exists."""
    out = tmp_path / 'qs'
    env = dict(os.environ, QS_SKIP_INSTALL='1', QS_PYTHON=sys.executable, QS_OUT=str(out), QS_HEIGHT='64', QS_WIDTH='192', QS_SCENES='2',
               QS_FRAMES='5', QS_EPOCHS='1', QS_EPOCH_SIZE='1', QS_BATCH='2', QS_WORKERS='0', QS_DEMO_FRAMES='3',
               QS_ODOM_FRAMES='6', QS_DEVICE='cpu', OMP_NUM_THREADS='2')
    result = subprocess.run(['sh', os.path.join(ROOT, 'scripts', 'quickstart.sh')], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Abs Rel on the held-out synthetic drive: untrained' in result.stdout
    assert 'ego-motion on the synthetic odometry drive: no 100 m segment, ATE' in result.stdout
    assert (out / 'pose_eval' / '00' / 'trajectory.png').is_file()
    for net in ('untrained', 'trained'):
        assert (out / f'eval_{net}' / 'metrics.json').is_file()
    run = next((out / 'checkpoints' / 'quickstart').iterdir())
    assert (run / 'dispnet_checkpoint.pth.tar').is_file()
    demo = next((out / 'demo' / 'quickstart').iterdir())
    assert (demo / 'demo.mp4').is_file() and (demo / 'trajectory.txt').is_file()
    summary = json.loads((demo / 'tracks.json').read_text())['summary']
    assert summary['tracked_objects'] >= 1  # the validation scene holds moving cars (--val-moving-cars)
    assert f"demo                 : {summary['tracked_objects']} tracked objects, mean speed" in result.stdout
