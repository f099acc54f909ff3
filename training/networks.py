"""Stage 7: train the NLML-HPE encoder and heads.

* **Latents.**  Grid samples get the factor rows of their pose (yaw row, pitch
  row, roll row of ``U_yaw``, ``U_pitch``, ``U_roll``); off-grid ``extra``
  samples get the cosine-manifold latents at their continuous angles, which is
  what makes the model continuous between grid points.  Training runs in a
  standardised latent space ``z = (l - m) / s``; afterwards the scaling is
  folded into the encoder's last layer and the heads' first layer, so the
  exported model's latents are the raw factor-space latents.
* **Heads** are trained first, on densely sampled cosine latents (angles uniform
  over the grid range plus a margin, small Gaussian latent noise) to recover
  the angle in radians.
* **Encoder** (features standardised by the ``feature_mean``/``feature_std``
  buffers) is trained with Adam, minibatches and a cosine learning-rate
  schedule; optionally the whole net is fine-tuned end to end on the angles.

Writes ``net.safetensors`` (state dict), ``latent_scaling.npz``,
``history.json``, ``loss_curves.png``, ``report.md``; returns the held-out
synthetic-identity MAE per angle and the expression sensitivity
(:func:`expression_sensitivity`: how far one blendshape at weight 0.5 moves
the angles of held-out identities, the test of robustness to talking and
smiling faces).
"""

import json
from pathlib import Path
import time

import numpy as np
from tqdm import tqdm

from training.manifolds import cosine_latents

DEFAULTS = {
    'epochs': 20, 'batch_size': 256, 'lr': 1e-3, 'weight_decay': 0.0,
    'grid_targets': 'factor',          # factor | cosine
    'feature_std_floor': 0.1,          # x median feature std
    'latent_std_floor': 0.05,          # x largest latent std of the block
    'feature_noise': 0.0,              # Gaussian noise on normalised features (augmentation)
    'head_samples': 200000, 'head_epochs': 30, 'head_batch_size': 1024, 'head_lr': 1e-3,
    'head_margin_deg': 5.0, 'head_noise': 0.05,
    'finetune_epochs': 0, 'finetune_lr': 1e-4,
    'threads': 2,                      # torch threads (1 is faster on a busy machine)
}


def _options(cfg):
    opts = dict(DEFAULTS)
    opts.update(cfg.get('networks') or {})
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise ValueError(f'networks: unknown option(s) {sorted(unknown)}; '
                         f'known: {sorted(DEFAULTS)}')
    if opts['grid_targets'] not in ('factor', 'cosine'):
        raise ValueError(f"networks.grid_targets must be 'factor' or 'cosine', "
                         f"got {opts['grid_targets']!r}")
    return opts


def _yaw_pitch_roll_rad(angles_pyr_deg):
    a = np.asarray(angles_pyr_deg, float)
    return np.radians(a[:, [1, 0, 2]])


def load_training_data(inputs, opts):
    """Return ``(X, L, A, test)``: features, raw latents, angles (yaw, pitch, roll rad)."""
    tdir = Path(inputs['tensor'])
    tensor = np.load(tdir / 'tensor.npy', mmap_mode='r')
    sets = dict(np.load(tdir / 'sets.npz'))
    with np.load(Path(inputs['decompose']) / 'decompose.npz') as dec:
        u = [dec['U_yaw'], dec['U_pitch'], dec['U_roll']]
    with np.load(Path(inputs['manifolds']) / 'manifolds.npz') as man:
        params = man['params']
    n_id, n_y, n_p, n_r, n_f = tensor.shape
    iy, ip, ir = np.meshgrid(np.arange(n_y), np.arange(n_p), np.arange(n_r), indexing='ij')
    iy, ip, ir = (np.tile(a.ravel(), n_id) for a in (iy, ip, ir))
    grid_ang = np.radians(np.stack([sets['yaw_grid'][iy], sets['pitch_grid'][ip],
                                    sets['roll_grid'][ir]], axis=1))
    if opts['grid_targets'] == 'factor':
        grid_lat = np.concatenate([u[0][iy], u[1][ip], u[2][ir]], axis=1)
    else:
        grid_lat = cosine_latents(params, grid_ang)
    extra_ang = _yaw_pitch_roll_rad(sets['extra_angles'])
    x = np.concatenate([np.asarray(tensor, np.float32).reshape(-1, n_f),
                        sets['extra_features']]).astype(np.float32)
    lat = np.concatenate([grid_lat, cosine_latents(params, extra_ang)]).astype(np.float32)
    ang = np.concatenate([grid_ang, extra_ang]).astype(np.float32)
    test = {'x': sets['test_features'].astype(np.float32),
            'ang': _yaw_pitch_roll_rad(sets['test_angles']).astype(np.float32)}
    test['lat'] = cosine_latents(params, test['ang']).astype(np.float32)
    ranges = np.array([[sets[f'{n}_grid'][0], sets[f'{n}_grid'][-1]]
                       for n in ('yaw', 'pitch', 'roll')], float)
    return x, lat, ang, test, params, ranges


def _latent_scaling(lat, floor):
    m = lat.mean(axis=0)
    s = lat.std(axis=0)
    for b in range(3):
        blk = slice(3 * b, 3 * b + 3)
        s[blk] = np.maximum(s[blk], floor * s[blk].max())
    return m.astype(np.float32), np.maximum(s, 1e-8).astype(np.float32)


def _batches(n, batch_size, gen):
    import torch

    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def _fold_scaling(net, m, s):
    """Fold ``z = (l - m) / s`` into the encoder's last layer and the heads' first layers."""
    import torch

    with torch.no_grad():
        last = net.encoder[-1]
        ms, ss = torch.from_numpy(m), torch.from_numpy(s)
        last.weight.mul_(ss[:, None])
        last.bias.mul_(ss).add_(ms)
        for b, head in enumerate(net.heads):
            first = head[0]
            mb, sb = ms[3 * b:3 * b + 3], ss[3 * b:3 * b + 3]
            first.bias.sub_(first.weight @ (mb / sb))
            first.weight.div_(sb[None, :])


def _mae_deg(pred_rad, true_rad):
    err = np.degrees(np.abs(np.asarray(pred_rad) - np.asarray(true_rad)))
    return {'yaw': float(err[:, 0].mean()), 'pitch': float(err[:, 1].mean()),
            'roll': float(err[:, 2].mean()), 'mean': float(err.mean())}


def train_heads(net, params, ranges, m, s, opts, gen, history):
    """Train the three heads on dense cosine latents (standardised space)."""
    import torch

    margin = opts['head_margin_deg']
    n = int(opts['head_samples'])
    lo = np.radians(ranges[:, 0] - margin)
    hi = np.radians(ranges[:, 1] + margin)
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    ang = rng.uniform(lo, hi, size=(n, 3))
    z = (cosine_latents(params, ang) - m) / s
    z_t = torch.from_numpy(z.astype(np.float32))
    a_t = torch.from_numpy(ang.astype(np.float32))
    head_params = [p for h in net.heads for p in h.parameters()]
    opt = torch.optim.Adam(head_params, lr=opts['head_lr'])
    epochs = int(opts['head_epochs'])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    noise = float(opts['head_noise'])
    for _ in tqdm(range(epochs), desc='heads', unit='epoch'):
        total = 0.0
        for idx in _batches(n, int(opts['head_batch_size']), gen):
            zb = z_t[idx]
            if noise > 0:
                zb = zb + noise * torch.randn(zb.shape, generator=gen)
            loss = torch.nn.functional.smooth_l1_loss(net.decode(zb), a_t[idx], beta=0.01)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        history['head_loss'].append(total / n)


def train_encoder(net, x_t, z_t, test, m, s, opts, gen, history):
    """Train the encoder to output standardised latents (MSE)."""
    import torch

    enc_params = list(net.encoder.parameters())
    opt = torch.optim.Adam(enc_params, lr=opts['lr'], weight_decay=opts['weight_decay'])
    epochs = int(opts['epochs'])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    noise = float(opts['feature_noise'])
    test_x = torch.from_numpy(test['x'])
    test_z = torch.from_numpy((test['lat'] - m) / s)
    n = len(x_t)
    bar = tqdm(range(epochs), desc='encoder', unit='epoch')
    for _ in bar:
        net.train()
        total = 0.0
        for idx in _batches(n, int(opts['batch_size']), gen):
            xb = x_t[idx]
            if noise > 0:
                xb = xb + noise * torch.randn(xb.shape, generator=gen)
            loss = torch.nn.functional.mse_loss(net.encode(xb), z_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        history['encoder_loss'].append(total / n)
        net.eval()
        with torch.no_grad():
            zt = net.encode(test_x) if len(test_x) else None
            if zt is not None:
                history['encoder_test_loss'].append(
                    float(torch.nn.functional.mse_loss(zt, test_z)))
                mae = _mae_deg(net.decode(zt).numpy(), test['ang'])
                history['test_mae_deg'].append(mae['mean'])
                bar.set_postfix(loss=f'{total / n:.4f}', test_mae=f"{mae['mean']:.2f}")


def finetune(net, x_t, a_t, opts, gen, history):
    """Optionally fine-tune the whole net end to end on the angles (L1, radians)."""
    import torch

    epochs = int(opts['finetune_epochs'])
    if epochs <= 0:
        return
    opt = torch.optim.Adam(net.parameters(), lr=opts['finetune_lr'])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    noise = float(opts['feature_noise'])
    for _ in tqdm(range(epochs), desc='finetune', unit='epoch'):
        net.train()
        total = 0.0
        for idx in _batches(len(x_t), int(opts['batch_size']), gen):
            xb = x_t[idx]
            if noise > 0:
                xb = xb + noise * torch.randn(xb.shape, generator=gen)
            loss = torch.nn.functional.l1_loss(net(xb)[1], a_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        history['finetune_loss'].append(total / len(x_t))


def expression_sensitivity(cfg, inputs, model, weight=0.5, n=200, seed=0):
    """Mean angle shift (deg, pitch/yaw/roll) per blendshape at ``weight``.

    Held-out identities are projected (stage 3's cameras) at random moderate
    poses, once neutral and once with the blendshape; the shift is the mean
    difference of the network's raw angles.  Returns ``{name: [dp, dy, dr]}``,
    empty when the face source has no expressions.
    """
    from nlml_hpe.features import normalise_landmarks

    from .correspondence import face_model_available, landmarks_of, load_correspondence
    from .faces import load_faces, load_source
    from .synth_landmarks import Projector

    if not face_model_available(inputs):
        return {}  # external landmarks artifact: no face model at hand
    source = load_source(cfg['faces'])
    n_expr = len(source.expression_modes)
    if n_expr == 0:
        return {}
    faces = load_faces(inputs['faces'])
    pool = faces['test_coeffs'] if len(faces['test_coeffs']) else faces['train_coeffs']
    corr = load_correspondence(inputs['correspondence'])
    rng = np.random.default_rng(seed)
    coeffs = pool[rng.integers(0, len(pool), n)]
    angles = np.stack([rng.uniform(-20, 20, n), rng.uniform(-30, 30, n),
                       rng.uniform(-15, 15, n)], axis=1)
    projector = Projector(cfg.get('landmarks', {}), rng, float(corr.get('z_scale', 1.0)))
    cams = projector.cameras(n)

    def angles_for(expr):
        lm = projector.project(landmarks_of(source, corr, coeffs, expr), angles, cams)
        return model.predict(normalise_landmarks(projector.centre(lm, cams)), calibrated=False)

    neutral = angles_for(np.zeros((n, n_expr)))
    names = source.expression_names or tuple(f'expression_{k}' for k in range(n_expr))
    out = {}
    for k, name in enumerate(names):
        expr = np.zeros((n, n_expr))
        expr[:, k] = weight
        out[name] = [round(float(v), 2) for v in (angles_for(expr) - neutral).mean(axis=0)]
    return out


def _plot(out_dir, history):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    keys = [k for k in ('head_loss', 'encoder_loss', 'encoder_test_loss', 'test_mae_deg',
                        'finetune_loss') if history.get(k)]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, k in zip(axes[0], keys):
        ax.plot(np.arange(1, len(history[k]) + 1), history[k], '.-')
        ax.set_title(k)
        ax.set_xlabel('epoch')
        if k != 'test_mae_deg':
            ax.set_yscale('log')
    fig.tight_layout()
    fig.savefig(out_dir / 'loss_curves.png', dpi=90)
    plt.close(fig)


def run(cfg, out_dir, inputs):
    """Train encoder + heads; write the state dict and reports; return a summary."""
    from safetensors.torch import save_file
    import torch

    from nlml_hpe.model import PoseModel

    from .nlmlnet import NLMLNet, state_dict_to_numpy

    out_dir = Path(out_dir)
    opts = _options(cfg)
    threads = int(opts['threads'])
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(int(cfg.get('seed', 0)))
    torch.manual_seed(int(cfg.get('seed', 0)))
    t0 = time.perf_counter()
    x, lat, ang, test, params, ranges = load_training_data(inputs, opts)
    m, s = _latent_scaling(lat, opts['latent_std_floor'])
    net = NLMLNet()
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.maximum(std, opts['feature_std_floor'] * np.median(std[std > 0]))
    net.feature_mean.copy_(torch.from_numpy(mean))
    net.feature_std.copy_(torch.from_numpy(std.astype(np.float32)))
    history = {'head_loss': [], 'encoder_loss': [], 'encoder_test_loss': [],
               'test_mae_deg': [], 'finetune_loss': []}
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    torch.set_num_threads(1)  # the heads are tiny: threading costs more than it gains
    train_heads(net, params, ranges, m, s, opts, gen, history)
    torch.set_num_threads(threads)
    t_heads = time.perf_counter() - t1
    x_t = torch.from_numpy(x)
    z_t = torch.from_numpy(((lat - m) / s).astype(np.float32))
    t2 = time.perf_counter()
    train_encoder(net, x_t, z_t, test, m, s, opts, gen, history)
    t_enc = time.perf_counter() - t2
    t3 = time.perf_counter()
    finetune(net, x_t, torch.from_numpy(ang), opts, gen, history)
    t_ft = time.perf_counter() - t3
    net.eval()
    _fold_scaling(net, m, s)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              str(out_dir / 'net.safetensors'))
    np.savez(out_dir / 'latent_scaling.npz', mean=m, std=s)
    model = PoseModel(state_dict_to_numpy(net))
    summary = {'n_train': int(len(x)), 'n_test': int(len(test['x'])),
               'times_s': {'load': round(t_load, 1), 'heads': round(t_heads, 1),
                           'encoder': round(t_enc, 1), 'finetune': round(t_ft, 1)}}
    if len(test['x']):
        lat_pred, ang_pred = model.forward(test['x'])
        summary['test_mae_deg'] = _mae_deg(ang_pred, test['ang'])
        summary['test_latent_rmse'] = float(np.sqrt(np.mean((lat_pred - test['lat']) ** 2)))
        # Heads alone on the exact cosine latents of the test angles (the ceiling).
        summary['head_only_mae_deg'] = _mae_deg(model.decode(test['lat']), test['ang'])
    sub = np.random.default_rng(0).choice(len(x), size=min(5000, len(x)), replace=False)
    summary['train_mae_deg'] = _mae_deg(model.forward(x[sub])[1], ang[sub])
    sens = expression_sensitivity(cfg, inputs, model)
    worst = sorted(sens.items(), key=lambda kv: -max(abs(v) for v in kv[1]))[:8]
    summary['expression_sensitivity_deg'] = dict(worst)
    (out_dir / 'history.json').write_text(json.dumps(history, indent=1) + '\n')
    _plot(out_dir, history)
    t = summary.get('test_mae_deg', {})
    (out_dir / 'report.md').write_text(
        '# Stage 7: networks\n\n'
        f"- training samples {summary['n_train']} (grid + extra), held-out test samples "
        f"{summary['n_test']}\n"
        f"- times (s): {summary['times_s']}\n"
        f'- held-out synthetic identities MAE (deg): {t}\n'
        f"- heads only, on exact cosine latents (deg): {summary.get('head_only_mae_deg')}\n"
        f"- training subset MAE (deg): {summary['train_mae_deg']}\n"
        '- loss curves: loss_curves.png\n\n'
        '## Expression sensitivity\n\n'
        'Mean shift of (pitch, yaw, roll) in degrees when one blendshape is set to 0.5 on '
        'held-out identities (projected, moderate poses); the 8 largest:\n\n'
        + ''.join(f'- {k}: {v}\n' for k, v in worst))
    return summary
