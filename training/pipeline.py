"""Pipeline runner: config loading, seeding, resumable stages and the CLI.

Usage (from the repository root)::

    .venv/bin/python -m training.pipeline --config training/configs/default.yaml \
        [--workdir DIR] [--force STAGE ... | all] [--until STAGE] [--only STAGE] \
        [--landmarks PATH]

Each stage is a module ``training.<stage>`` (the landmarks stage's:
``training.synth_landmarks``, see :data:`STAGE_MODULES`) with ``run(cfg,
out_dir, inputs) -> dict``.  After a stage succeeds the runner writes ``<out_dir>/stage.json``
(summary, elapsed seconds, hash of the config sections the stage depends on);
a re-run skips a finished stage whose hash matches unless it is forced or an
upstream stage re-ran.  ``<workdir>/pipeline.json`` records the whole run.
"""

import argparse
import copy
import hashlib
import importlib
import json
from pathlib import Path
import random
import sys
import time

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]

STAGES = ('faces', 'correspondence', 'landmarks', 'tensor', 'decompose', 'manifolds',
          'networks', 'calibrate', 'export', 'uncertainty')

#: Module of each stage (``training.<module>``) where it is not the stage's name: the
#: landmarks stage's is ``synth_landmarks`` (``landmarks`` is the run time's landmark stage).
STAGE_MODULES = {'landmarks': 'synth_landmarks'}

#: Config sections each stage depends on (besides ``seed``); a change re-runs the stage.
STAGE_SECTIONS = {
    'faces': ('faces',),
    'correspondence': ('faces', 'correspondence'),
    'landmarks': ('faces', 'correspondence', 'grid', 'landmarks'),
    'tensor': ('tensor',),
    'decompose': ('decompose',),
    'manifolds': ('manifolds',),
    'networks': ('networks',),
    # Renders with the faces, correspondence and cameras of stages 1-3.
    'calibrate': ('calibrate', 'faces', 'landmarks'),
    'export': ('export',),
    # Renders fresh faces with stages 1-3's face model and cameras; reads them with the export.
    'uncertainty': ('uncertainty', 'faces', 'landmarks', 'export'),
}

#: Stages that produce the landmarks artifact (replaced by ``--landmarks PATH``).
SYNTH_STAGES = ('faces', 'correspondence', 'landmarks')

#: Config keys holding paths, resolved against the repository root.
PATH_KEYS = (('workdir',), ('faces', 'path'), ('export', 'out_dir'))

#: Config keys no longer read, and why: a config that sets one is refused when loaded
#: (before hours of stages), not silently run without what it asked for.
RETIRED_KEYS = {
    ('export', 'aflw2000'): 'training never reads the AFLW2000 dev split; score the exported '
                            'model with nlml-hpe benchmark aflw2000 DIR --model OUT_DIR',
    ('export', 'aflw_dir'): 'training never reads the AFLW2000 dev split',
}

STAGE_FILE = 'stage.json'


class PipelineError(RuntimeError):
    """A stage failed or the pipeline was misconfigured."""


def load_config(path):
    """Load a YAML config; raise ``ValueError`` with the file name when it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f'config file not found: {path}')
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f'cannot parse config {path}: {exc}') from exc
    if not isinstance(cfg, dict):
        raise ValueError(f'config {path} must be a YAML mapping, got {type(cfg).__name__}')
    for (section, key), why in RETIRED_KEYS.items():
        if (cfg.get(section) or {}).get(key):
            raise ValueError(f'config {path}: {section}.{key} is no longer read ({why}); '
                             'remove it')
    cfg.setdefault('seed', 0)
    cfg.setdefault('workdir', f"runs/{cfg.get('name', path.stem)}")
    cfg['config_path'] = str(path.resolve())
    return cfg


def resolve_paths(cfg, root=REPO):
    """Return a copy of ``cfg`` with relative path keys made absolute against ``root``."""
    cfg = copy.deepcopy(cfg)
    for keys in PATH_KEYS:
        node = cfg
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        value = node.get(keys[-1]) if isinstance(node, dict) else None
        if isinstance(value, str) and not value.startswith('{workdir}'):
            p = Path(node[keys[-1]]).expanduser()
            node[keys[-1]] = str(p if p.is_absolute() else (Path(root) / p).resolve())
    return cfg


def config_hash(cfg, stage, upstream=None):
    """Return the sha256 of the config sections ``stage`` depends on (plus the seed).

    ``upstream`` (optional) fingerprints the earlier stages' artifacts, so a stage
    re-runs when an upstream stage was re-run in another invocation.
    """
    artifact = cfg.get('_landmarks_artifact')
    if artifact and stage in SYNTH_STAGES:
        # An external landmarks artifact replaces stages 1-3: only the file matters.
        path = Path(artifact)
        part = {'artifact': artifact,
                'mtime_ns': path.stat().st_mtime_ns if path.exists() else None}
    else:
        part = {'seed': cfg.get('seed'), 'upstream': upstream}
        for sec in STAGE_SECTIONS[stage]:
            part[sec] = cfg.get(sec)
    blob = json.dumps(part, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def seed_everything(seed):
    """Seed python, numpy and torch (when importable) and use both cores."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a training requirement
        return
    torch.manual_seed(seed)
    torch.set_num_threads(2)


def _read_stage(out_dir):
    path = Path(out_dir) / STAGE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _stage_list(until=None, only=None):
    for name in (until, only):
        if name is not None and name not in STAGES:
            raise ValueError(f'unknown stage {name!r}; stages: {", ".join(STAGES)}')
    if only is not None:
        return [only]
    stop = STAGES.index(until) + 1 if until else len(STAGES)
    return list(STAGES[:stop])


def _link_landmarks(artifact, out_dir):
    """Stand in for stages 1-3 with an existing ``landmarks.npz`` (symlinked)."""
    artifact = Path(artifact).resolve()
    if not artifact.is_file():
        raise ValueError(f'landmarks artifact not found: {artifact}')
    out_dir.mkdir(parents=True, exist_ok=True)
    link = out_dir / 'landmarks.npz'
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(artifact)
    return {'artifact': str(artifact), 'note': 'external landmarks artifact (stages 1-3 skipped)'}


def run_pipeline(cfg, *, workdir=None, force=(), until=None, only=None, landmarks=None,
                 log=print):
    """Run the stages of ``cfg`` (already path-resolved) and return the pipeline record."""
    workdir = Path(workdir or cfg['workdir']).resolve()
    cfg = copy.deepcopy(cfg)
    cfg['workdir'] = str(workdir)
    force = set(force or ())
    if 'all' in force:
        force = set(STAGES)
    unknown = force - set(STAGES)
    if unknown:
        raise ValueError(f'unknown stage(s) to force: {sorted(unknown)}; '
                         f'stages: {", ".join(STAGES)}')
    if landmarks is not None:
        cfg['_landmarks_artifact'] = str(Path(landmarks).resolve())
    selected = _stage_list(until, only)
    workdir.mkdir(parents=True, exist_ok=True)
    inputs = {s: workdir / s for s in STAGES}
    record = {'config': cfg.get('config_path'), 'workdir': str(workdir), 'stages': {}}
    pipeline_json = workdir / 'pipeline.json'
    if pipeline_json.is_file():
        try:
            record['stages'] = json.loads(pipeline_json.read_text()).get('stages', {})
        except (OSError, ValueError):
            pass
    upstream_reran = False
    total = 0.0
    for stage in selected:
        out_dir = workdir / stage
        upstream = {s: (_read_stage(workdir / s) or {}).get('run_id')
                    for s in STAGES[:STAGES.index(stage)]}
        chash = config_hash(cfg, stage, upstream)
        prev = _read_stage(out_dir)
        done = prev is not None and prev.get('config_hash') == chash
        if done and stage not in force and not upstream_reran:
            log(f'[{stage}] up to date ({prev.get("elapsed_s", 0):.1f} s when run), skipped')
            record['stages'][stage] = dict(prev, skipped=True)
            continue
        seed_everything(int(cfg.get('seed', 0)) + STAGES.index(stage))
        log(f'[{stage}] running ...')
        t0 = time.perf_counter()
        stage_cfg = dict(cfg, _stage=stage)
        if (stage_json := out_dir / STAGE_FILE).exists():
            stage_json.unlink()
        out_dir.mkdir(parents=True, exist_ok=True)
        if landmarks is not None and stage in SYNTH_STAGES:
            summary = (_link_landmarks(landmarks, out_dir) if stage == 'landmarks'
                       else {'note': 'skipped: external landmarks artifact'})
        else:
            name = f'training.{STAGE_MODULES.get(stage, stage)}'
            try:
                module = importlib.import_module(name)
            except ImportError as exc:
                raise PipelineError(f'stage {stage!r}: cannot import {name}: {exc}') from exc
            summary = module.run(stage_cfg, out_dir, {s: inputs[s] for s in
                                                      STAGES[:STAGES.index(stage)]})
        elapsed = time.perf_counter() - t0
        total += elapsed
        entry = {'stage': stage, 'summary': summary or {}, 'elapsed_s': round(elapsed, 3),
                 'config_hash': chash, 'run_id': time.time_ns(),
                 'finished': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
        (out_dir / STAGE_FILE).write_text(json.dumps(entry, indent=2, default=_json_default)
                                          + '\n')
        record['stages'][stage] = dict(entry, skipped=False)
        upstream_reran = True
        log(f'[{stage}] done in {elapsed:.1f} s')
    record['elapsed_s_this_run'] = round(total, 3)
    record['elapsed_s_all_stages'] = round(sum(
        s.get('elapsed_s', 0.0) for s in record['stages'].values()), 3)
    pipeline_json.write_text(json.dumps(record, indent=2, default=_json_default) + '\n')
    times = []
    for s in STAGES:
        if s in record['stages']:
            entry = record['stages'][s]
            cached = ' (cached)' if entry.get('skipped') else ''
            times.append(f"{s} {entry['elapsed_s']:.1f}{cached}")
    log('stage times (s): ' + ', '.join(times))
    return record


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f'not JSON serialisable: {type(obj).__name__}')


def build_parser():
    """Return the argument parser of the training CLI."""
    p = argparse.ArgumentParser(prog='nlml-hpe train',
                                description='Run the offline NLML-HPE training pipeline.')
    p.add_argument('--config', default=str(REPO / 'training' / 'configs' / 'default.yaml'),
                   help='YAML config (default: training/configs/default.yaml)')
    p.add_argument('--workdir', help='override the config workdir')
    p.add_argument('--force', nargs='+', default=[], metavar='STAGE',
                   help='re-run these stages (and everything downstream); "all" for all')
    p.add_argument('--until', metavar='STAGE', help='stop after this stage')
    p.add_argument('--only', metavar='STAGE', help='run only this stage')
    p.add_argument('--landmarks', metavar='PATH',
                   help='use an existing landmarks.npz instead of running stages 1-3')
    return p


def main(argv=None):
    """CLI entry point; returns a process exit code."""
    args = build_parser().parse_args(argv)
    try:
        cfg = resolve_paths(load_config(args.config))
        workdir = args.workdir and str(Path(args.workdir).resolve())
        run_pipeline(cfg, workdir=workdir, force=args.force, until=args.until,
                     only=args.only, landmarks=args.landmarks)
    except (ValueError, PipelineError) as exc:
        print(f'nlml-hpe train: error: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
