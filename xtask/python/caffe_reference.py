"""Synthetic Caffe PSPNet models and their expected logits.

Writes, for each architecture A (pspnet50_ade20k, pspnet101_voc2012,
pspnet101_cityscapes), into the folder given by --out:

- `A_deploy.caffemodel`: a NetParameter as Caffe saves a deploy net: the
  deploy layer types (Convolution / HoleConvolution, BN, ReLU, Pooling,
  Eltwise, Concat, Interp, Dropout) with their *_param messages, `phase: TEST`
  on every layer and the `Split` layers Caffe inserts for blobs read by
  several layers (consumers' bottoms renamed to the split tops).  The 101s
  use the field numbers of the newer PSPNet fork (caffe.proto at c479f4fe:
  interp_param 143, bn_param 152 with eps 4, ConvolutionParameter.dilation
  18); pspnet50_ade20k uses the older fork (caffe.proto at 88d0b3ee:
  HoleConvolution with ConvolutionParameter.hole 17, bn_param 137 with eps 8,
  interp_param 163).
- `A_release.caffemodel`: the released-weights style: ConvolutionData /
  HoleConvolutionData / BNData layers (other layers with plain types), no
  *_param message at all (a bias exists iff a second blob does), plus the
  auxiliary branch conv4_{n+1} (+/bn, /relu, /dropout) and conv6_1.
  pspnet50's release file stores blob dims in the legacy num/channels/
  height/width fields (a bias as 1x1x1xN); the others use BlobShape.
- `A.prototxt`: the deploy prototxt in the authors' text style.
- `A_HxW.npy`: float32 logits (1, classes, H', W') for `input_HxW.png`,
  computed by an independent float64 numpy implementation.  At the deploy
  size (default 89x89) the literal Caffe graph (AVE pool kernel=stride=F/bin,
  Interp to F, final Interp zoom_factor 8); at any other size the same graph
  with adaptive average pooling (PyTorch bins), bilinear align_corners=True
  to the feature size and a final bilinear align_corners=True to the input
  size.  The max pool is always Caffe's ceil-mode pool.

The BN eps of conv5_4/bn is 1e-4 (set in the deploy file, the prototxt,
and the release file's one `bn_param`, so all three inputs agree); all
other BN layers use the default 1e-5.  conv5_4's weights are
scaled so that its output variance is about 1e-4, so that eps visibly
matters.

Usage:

    /work/venv/py/bin/python xtask/python/caffe_reference.py --out tests/fixtures/caffe
    /work/venv/py/bin/python xtask/python/caffe_reference.py --out /tmp/c473 \
        --deploy 473x473 --size 473x473
    /work/venv/py/bin/python xtask/python/caffe_reference.py --out /tmp/full --full-width
    /work/venv/py/bin/python xtask/python/caffe_reference.py --out tests/fixtures/caffe --self-test

Needs numpy and pillow; --self-test also uses torch when installed.
"""

import argparse
import os
import struct
import sys
import time
import zlib

import numpy as np
from PIL import Image

MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float64)
EPS_DEFAULT = float(np.float32(1e-5))
EPS_CONV5_4 = float(np.float32(1e-4))
CONV5_4_TARGET_VAR = 1e-4
BINS = (1, 2, 3, 6)
CALIB_SIZE = (89, 89)
CALIB_SEEDS = (9001, 9002, 9003)

ARCHS = {
    "pspnet50_ade20k": dict(
        blocks=(3, 4, 6, 3), style="old", classes=150, net_name="pspnet50_ADE20K",
        stride_on_reduce=True, legacy_release_dims=True),
    "pspnet101_voc2012": dict(
        blocks=(3, 4, 23, 3), style="new", classes=21, net_name="pspnet101_VOC2012",
        stride_on_reduce=False, legacy_release_dims=False),
    "pspnet101_cityscapes": dict(
        blocks=(3, 4, 23, 3), style="new", classes=19, net_name="pspnet101_cityscapes",
        stride_on_reduce=False, legacy_release_dims=False),
}


def widths(arch, full):
    if full:
        s1, p, classes = 64, 64, ARCHS[arch]["classes"]
    else:
        s1, p, classes = 4, 2, 5
    c4, c5 = 4 * 4 * p, 4 * 8 * p
    return dict(s1=s1, p=p, c4=c4, c5=c5, pyr=c5 // 4, head=c5 // 4, aux=c4 // 4, classes=classes)


def f32(a):
    """Round to float32 and hold in float64 (what the caffemodel stores)."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


# ----------------------------------------------------------------------------
# float64 numpy layers (NCHW)
# ----------------------------------------------------------------------------

def conv2d(x, w, b=None, stride=1, pad=0, dilation=1):
    n, c, h, wd = x.shape
    o, ci, kh, kw = w.shape
    assert ci == c, (ci, c)
    ho = (h + 2 * pad - (dilation * (kh - 1) + 1)) // stride + 1
    wo = (wd + 2 * pad - (dilation * (kw - 1) + 1)) // stride + 1
    if kh == 1 and kw == 1 and pad == 0:
        xs = x[:, :, : stride * (ho - 1) + 1: stride, : stride * (wo - 1) + 1: stride]
        cols = xs.reshape(n, c, ho * wo)
    else:
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        taps = []
        for i in range(kh):
            for j in range(kw):
                r0, c0 = i * dilation, j * dilation
                taps.append(xp[:, :, r0: r0 + stride * (ho - 1) + 1: stride,
                               c0: c0 + stride * (wo - 1) + 1: stride])
        cols = np.stack(taps, axis=2).reshape(n, c * kh * kw, ho * wo)
    out = np.matmul(w.reshape(o, -1), cols).reshape(n, o, ho, wo)
    if b is not None:
        out += b.reshape(1, o, 1, 1)
    return out


def caffe_pool_size(size, k, s, p):
    out = int(np.ceil((size + 2 * p - k) / s)) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1
    return out


def block_plan(cfg, w):
    """The bottleneck blocks of stages conv2..conv5, as the graph and the prototxt both walk them:
    per stage, (name prefix, block number, planes, dilation, stride, stride of the 1x1 reduce,
    stride of the 3x3) for each block."""
    planes = [w["p"], 2 * w["p"], 4 * w["p"], 8 * w["p"]]
    plan = []
    for si, stage in enumerate((2, 3, 4, 5)):
        dil = {4: 2, 5: 4}.get(stage, 1)
        blocks = []
        for b in range(1, cfg["blocks"][si] + 1):
            s = 2 if stage == 3 and b == 1 else 1
            s_red, s_3x3 = (s, 1) if cfg["stride_on_reduce"] else (1, s)
            blocks.append(("conv%d_%d" % (stage, b), b, planes[si], dil, s, s_red, s_3x3))
        plan.append((stage, blocks))
    return plan


def caffe_max_pool(x, k, s, p):
    n, c, h, w = x.shape
    ho, wo = caffe_pool_size(h, k, s, p), caffe_pool_size(w, k, s, p)
    extra_h = max(0, (ho - 1) * s + k - p - h)
    extra_w = max(0, (wo - 1) * s + k - p - w)
    xp = np.pad(x, ((0, 0), (0, 0), (p, extra_h), (p, extra_w)), constant_values=-np.inf)
    out = np.full((n, c, ho, wo), -np.inf)
    for i in range(k):
        for j in range(k):
            np.maximum(out, xp[:, :, i: i + s * (ho - 1) + 1: s, j: j + s * (wo - 1) + 1: s], out=out)
    return out


def caffe_ave_matrix(size, k, s, p):
    """Caffe AVE pooling along one axis: divisor counts padding up to size+pad."""
    out = caffe_pool_size(size, k, s, p)
    m = np.zeros((out, size))
    for i in range(out):
        start = i * s - p
        end = min(start + k, size + p)
        div = end - start
        start, end = max(start, 0), min(end, size)
        m[i, start:end] = 1.0 / div
    return m


def adaptive_matrix(size, bins):
    m = np.zeros((bins, size))
    for i in range(bins):
        start = (i * size) // bins
        end = -((-(i + 1) * size) // bins)
        m[i, start:end] = 1.0 / (end - start)
    return m


def interp_matrix(size_in, size_out):
    """Bilinear, align_corners=True (Caffe's caffe_cpu_interp2)."""
    m = np.zeros((size_out, size_in))
    r = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
    for i in range(size_out):
        src = r * i
        i0 = min(int(np.floor(src)), size_in - 1)
        i1 = min(i0 + 1, size_in - 1)
        lam = src - i0
        m[i, i0] += 1.0 - lam
        m[i, i1] += lam
    return m


def separable(x, my, mx):
    return np.einsum("ih,nchw,jw->ncij", my, x, mx, optimize=True)


def caffe_ave_pool(x, kh, kw, sh, sw, p=0):
    return separable(x, caffe_ave_matrix(x.shape[2], kh, sh, p), caffe_ave_matrix(x.shape[3], kw, sw, p))


def adaptive_ave_pool(x, bins):
    return separable(x, adaptive_matrix(x.shape[2], bins), adaptive_matrix(x.shape[3], bins))


def interp(x, ho, wo):
    return separable(x, interp_matrix(x.shape[2], ho), interp_matrix(x.shape[3], wo))


def batch_norm(x, slope, bias, mean, var, eps):
    sh = (1, -1, 1, 1)
    return slope.reshape(sh) * (x - mean.reshape(sh)) / np.sqrt(var.reshape(sh) + eps) + bias.reshape(sh)


def relu(x):
    return np.maximum(x, 0.0)


# ----------------------------------------------------------------------------
# The structured PSPNet forward; creates (and calibrates) parameters on first use
# ----------------------------------------------------------------------------

def conv_out(size, k, s, p, d=1):
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


def feature_size(h, w):
    """Spatial size of conv5_3 for an h x w input (same for both stride layouts)."""
    def one(n):
        n = conv_out(n, 3, 2, 1)
        n = caffe_pool_size(n, 3, 2, 1)
        return conv_out(n, 1, 2, 0)
    return one(h), one(w)


class PSPNet:
    def __init__(self, arch, full=False):
        self.arch = arch
        self.cfg = ARCHS[arch]
        self.w = widths(arch, full)
        self.seed = zlib.crc32(arch.encode())
        self.params = {}
        self.calibrating = False

    def rng(self, name, salt=0):
        return np.random.default_rng([self.seed, zlib.crc32(name.encode()), salt])

    def eps(self, name):
        return EPS_CONV5_4 if name == "conv5_4/bn" else EPS_DEFAULT

    def conv(self, name, x, cout, k, s=1, p=0, d=1, bias=False, target_var=None):
        if name not in self.params:
            assert self.calibrating, "parameter %s missing" % name
            cin = x.shape[1]
            rng = self.rng(name)
            wt = rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))
            b = rng.normal(0.0, 0.5, cout) if bias else None
            if target_var is not None:
                y = conv2d(x, wt, None, s, p, d)
                wt = wt * np.sqrt(target_var / y.var(axis=(0, 2, 3)).mean())
            self.params[name] = dict(w=f32(wt), b=None if b is None else f32(b), k=k, s=s, p=p, d=d)
        q = self.params[name]
        return conv2d(x, q["w"], q["b"], s, p, d)

    def bn(self, name, x):
        if name not in self.params:
            assert self.calibrating, "parameter %s missing" % name
            rng = self.rng(name)
            c = x.shape[1]
            mean = x.mean(axis=(0, 2, 3))
            var = x.var(axis=(0, 2, 3))
            var = np.maximum(var, 0.05 * var.mean() + 1e-8)
            mean = mean + 0.1 * np.sqrt(var) * rng.standard_normal(c)
            var = var * np.exp(rng.uniform(-0.2, 0.2, c))
            # Residual branches end small, so that the deep random network is
            # well conditioned (a float32 engine can then agree to 1e-5).
            low, high = (0.03, 0.08) if name.endswith("_1x1_increase/bn") else (0.5, 1.5)
            self.params[name] = dict(
                slope=f32(rng.uniform(low, high, c)), bias=f32(rng.normal(0.0, 0.1, c)),
                mean=f32(mean), var=f32(var), eps=self.eps(name))
        q = self.params[name]
        return batch_norm(x, q["slope"], q["bias"], q["mean"], q["var"], q["eps"])

    def cbr(self, name, x, cout, k, s=1, p=0, d=1, act=True, **kw):
        y = self.bn(name + "/bn", self.conv(name, x, cout, k, s, p, d, **kw))
        return relu(y) if act else y

    def forward(self, x, mode="adaptive", deploy_feat=None, aux=False):
        w, cfg = self.w, self.cfg
        in_h, in_w = x.shape[2:]
        x = self.cbr("conv1_1_3x3_s2", x, w["s1"], 3, 2, 1)
        x = self.cbr("conv1_2_3x3", x, w["s1"], 3, 1, 1)
        x = self.cbr("conv1_3_3x3", x, 2 * w["s1"], 3, 1, 1)
        x = caffe_max_pool(x, 3, 2, 1)
        aux_out = None
        for stage, blocks in block_plan(cfg, w):
            for pre, b, p, dil, s, s_red, s_3x3 in blocks:
                y = self.cbr(pre + "_1x1_reduce", x, p, 1, s_red, 0)
                y = self.cbr(pre + "_3x3", y, p, 3, s_3x3, dil, dil)
                y = self.cbr(pre + "_1x1_increase", y, 4 * p, 1, act=False)
                short = self.cbr(pre + "_1x1_proj", x, 4 * p, 1, s, act=False) if b == 1 else x
                x = relu(short + y)
            if stage == 4 and aux:
                n = "conv4_%d" % (cfg["blocks"][2] + 1)
                a = self.cbr(n, x, w["aux"], 3, 1, 1)
                aux_out = self.conv("conv6_1", a, w["classes"], 1, bias=True)
        fh, fw = x.shape[2:]
        if mode == "caffe":
            assert deploy_feat == (fh, fw), (deploy_feat, (fh, fw))
        branches = {}
        for bins in BINS:
            pre = "conv5_3_pool%d" % bins
            if mode == "caffe":
                pooled = caffe_ave_pool(x, fh // bins, fw // bins, fh // bins, fw // bins)
            else:
                pooled = adaptive_ave_pool(x, bins)
            y = self.cbr(pre + "_conv", pooled, w["pyr"], 1)
            branches[bins] = interp(y, fh, fw)
        x = np.concatenate([x, branches[6], branches[3], branches[2], branches[1]], axis=1)
        x = self.cbr("conv5_4", x, w["head"], 3, 1, 1, target_var=CONV5_4_TARGET_VAR)
        x = self.conv("conv6", x, w["classes"], 1, bias=True)
        if mode == "caffe":
            x = interp(x, (fh - 1) * 8 + 1, (fw - 1) * 8 + 1)
        else:
            x = interp(x, in_h, in_w)
        return x, aux_out

    def calibrate(self):
        self.calibrating = True
        # The committed 89x89 input is among the calibration images: its
        # activations stay centred, which keeps the random network well
        # conditioned for a float32 comparison.
        seeds = (input_seed(CALIB_SIZE),) + CALIB_SEEDS
        batch = np.concatenate([preprocess(natural_image(*CALIB_SIZE, s)) for s in seeds])
        self.forward(batch, mode="adaptive", aux=True)
        self.calibrating = False


# ----------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------

def natural_image(h, w, seed):
    """Deterministic smooth gradients + blobs + waves + noise, uint8 RGB (h, w, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy /= max(h - 1, 1)
    xx /= max(w - 1, 1)
    img = np.zeros((h, w, 3))
    for c in range(3):
        g = rng.uniform(40, 200) + rng.uniform(-80, 80) * yy + rng.uniform(-80, 80) * xx
        for _ in range(3):
            fy, fx = rng.uniform(0.5, 3.0, 2)
            g += rng.uniform(10, 35) * np.sin(2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 2 * np.pi))
        img[:, :, c] = g
    for _ in range(4):
        cy, cx = rng.uniform(0, 1, 2)
        r = rng.uniform(0.08, 0.3)
        col = rng.uniform(-90, 90, 3)
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[:, :, None] * col
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def preprocess(rgb):
    """uint8 RGB (h, w, 3) -> float64 (1, 3, h, w) BGR minus the Caffe means."""
    bgr = rgb[:, :, ::-1].astype(np.float64) - MEAN_BGR
    return bgr.transpose(2, 0, 1)[None].copy()


# ----------------------------------------------------------------------------
# Network description (layer list) shared by the three writers
# ----------------------------------------------------------------------------

def layer_list(net, deploy_feat, aux):
    """Layers in network order, without Split layers.  Each is a dict with
    name, kind, bottoms, tops and kind-specific geometry."""
    w, cfg = net.w, net.cfg
    L = []

    def conv(name, bottom, cout, k, s=1, p=0, d=1, bias=False, lr=1, pad_pos="before"):
        L.append(dict(name=name, kind="conv", bottoms=[bottom], tops=[name], cout=cout, k=k, s=s,
                      p=p, d=d, bias=bias, lr=lr, pad_pos=pad_pos))

    def bn(name, blob, lr=1):
        L.append(dict(name=name, kind="bn", bottoms=[blob], tops=[blob], lr=lr))

    def simple(kind, name, bottoms, top, **kw):
        L.append(dict(name=name, kind=kind, bottoms=list(bottoms), tops=[top], **kw))

    def cbr(name, bottom, cout, k, s=1, p=0, d=1, act=True, lr=1, pad_pos="before"):
        conv(name, bottom, cout, k, s, p, d, lr=lr, pad_pos=pad_pos)
        bn(name + "/bn", name, lr=lr)
        if act:
            simple("relu", name + "/relu", [name], name)
        return name

    x = cbr("conv1_1_3x3_s2", "data", w["s1"], 3, 2, 1)
    x = cbr("conv1_2_3x3", x, w["s1"], 3, 1, 1)
    x = cbr("conv1_3_3x3", x, 2 * w["s1"], 3, 1, 1)
    simple("pool", "pool1_3x3_s2", [x], "pool1_3x3_s2", method="MAX", kh=3, kw=3, sh=2, sw=2, p=1)
    x = "pool1_3x3_s2"
    for stage, blocks in block_plan(cfg, w):
        for pre, b, p, dil, s, s_red, s_3x3 in blocks:
            y = cbr(pre + "_1x1_reduce", x, p, 1, s_red, 0)
            y = cbr(pre + "_3x3", y, p, 3, s_3x3, dil, dil)
            y = cbr(pre + "_1x1_increase", y, 4 * p, 1, act=False)
            short = cbr(pre + "_1x1_proj", x, 4 * p, 1, s, act=False) if b == 1 else x
            simple("eltwise", pre, [short, y], pre)
            simple("relu", pre + "/relu", [pre], pre)
            x = pre
        if stage == 4 and aux:
            n = "conv4_%d" % (cfg["blocks"][2] + 1)
            cbr(n, x, w["aux"], 3, 1, 1, lr=10)
            simple("dropout", n + "/dropout", [n], n)
            conv("conv6_1", n, w["classes"], 1, bias=True, lr=10, pad_pos=None)
    fh, fw = deploy_feat
    for bins in BINS:
        pre = "conv5_3_pool%d" % bins
        simple("pool", pre, ["conv5_3"], pre, method="AVE", kh=fh // bins, kw=fw // bins,
               sh=fh // bins, sw=fw // bins, p=0)
        cbr(pre + "_conv", pre, w["pyr"], 1, lr=10, pad_pos=None)
        simple("interp", pre + "_interp", [pre + "_conv"], pre + "_interp", height=fh, width=fw)
    simple("concat", "conv5_3_concat", ["conv5_3", "conv5_3_pool6_interp", "conv5_3_pool3_interp",
                                        "conv5_3_pool2_interp", "conv5_3_pool1_interp"], "conv5_3_concat")
    cbr("conv5_4", "conv5_3_concat", w["head"], 3, 1, 1, lr=10, pad_pos="after")
    simple("dropout", "conv5_4/dropout", ["conv5_4"], "conv5_4")
    conv("conv6", "conv5_4", w["classes"], 1, bias=True, lr=10, pad_pos=None)
    simple("interp", "conv6_interp", ["conv6"], "conv6_interp", zoom=8)
    return L


def insert_splits(layers):
    """Caffe's InsertSplits (src/caffe/util/insert_splits.cpp)."""
    last_top = {"data": (-1, 0)}
    source = {}
    count = {}
    for i, l in enumerate(layers):
        for j, b in enumerate(l["bottoms"]):
            t = last_top[b]
            source[(i, j)] = t
            count[t] = count.get(t, 0) + 1
        for j, t in enumerate(l["tops"]):
            last_top[t] = (i, j)
    names = {i: l["name"] for i, l in enumerate(layers)}
    names[-1] = "input"
    split_idx = {}
    out = []
    for i, l in enumerate(layers):
        l = dict(l, bottoms=list(l["bottoms"]))
        for j, b in enumerate(l["bottoms"]):
            t = source[(i, j)]
            if count[t] > 1:
                k = split_idx.get(t, 0)
                split_idx[t] = k + 1
                l["bottoms"][j] = "%s_%s_%d_split_%d" % (b, names[t[0]], t[1], k)
        out.append(l)
        for j, top in enumerate(l["tops"]):
            n = count.get((i, j), 0)
            if n > 1:
                base = "%s_%s_%d_split" % (top, l["name"], j)
                out.append(dict(name=base, kind="split", bottoms=[top],
                                tops=["%s_%d" % (base, k) for k in range(n)]))
    return out


# ----------------------------------------------------------------------------
# Protobuf: a field tree rendered both as binary and as text format
# ----------------------------------------------------------------------------

class F:
    """One field: name (text format), number, kind and value.
    kind: 'uint' | 'bool' | 'enum' (value (text, int)) | 'float' | 'string' | 'msg'
    (value: list of F) | 'floats' (packed float32) | 'dims' (packed varints)."""

    def __init__(self, name, num, kind, value):
        self.name, self.num, self.kind, self.value = name, num, kind, value


def varint(v):
    v = int(v)
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(fields):
    out = bytearray()
    for f in sorted(fields, key=lambda f: f.num):  # protobuf C++ writes in field-number order
        if f.kind in ("uint", "bool"):
            out += varint(f.num << 3) + varint(int(f.value))
        elif f.kind == "enum":
            out += varint(f.num << 3) + varint(f.value[1])
        elif f.kind == "float":
            out += varint(f.num << 3 | 5) + struct.pack("<f", f.value)
        else:
            if f.kind == "string":
                data = f.value.encode()
            elif f.kind == "msg":
                data = encode(f.value)
            elif f.kind == "floats":
                data = np.asarray(f.value, dtype="<f4").tobytes()
            elif f.kind == "dims":
                data = b"".join(varint(d) for d in f.value)
            else:
                raise ValueError(f.kind)
            out += varint(f.num << 3 | 2) + varint(len(data)) + data
    return bytes(out)


def fmt_float(v):
    return np.format_float_positional(np.float32(v), trim="-")


def text(fields, indent=0):
    pad = "  " * indent
    out = []
    for f in fields:
        if f.kind == "msg":
            out.append("%s%s {\n%s%s}\n" % (pad, f.name, text(f.value, indent + 1), pad))
        elif f.kind == "string":
            out.append('%s%s: "%s"\n' % (pad, f.name, f.value))
        elif f.kind == "bool":
            out.append("%s%s: %s\n" % (pad, f.name, "true" if f.value else "false"))
        elif f.kind == "enum":
            out.append("%s%s: %s\n" % (pad, f.name, f.value[0]))
        elif f.kind == "float":
            out.append("%s%s: %s\n" % (pad, f.name, fmt_float(f.value)))
        else:
            out.append("%s%s: %d\n" % (pad, f.name, f.value))
    return "".join(out)


# Field numbers, checked against hszhao/PSPNet src/caffe/proto/caffe.proto.
NUMBERS = {
    # c479f4fe (newer fork)
    "new": dict(interp_param=143, bn_param=152, bn=dict(slope_filler=1, bias_filler=2, momentum=3, eps=4,
                                                          frozen=5), dilation=("dilation", 18)),
    # 88d0b3ee (older fork)
    "old": dict(interp_param=163, bn_param=137, bn=dict(scale_filler=1, shift_filler=2, moving_average=4,
                                                          decay=5, eps=8), dilation=("hole", 17)),
}


def param_spec(lr, decay):
    return F("param", 6, "msg", [F("lr_mult", 3, "float", lr), F("decay_mult", 4, "float", decay)])


def filler(name, num, kind, value=None):
    v = [F("type", 1, "string", kind)]
    if value is not None:
        v.append(F("value", 2, "float", value))
    return F(name, num, "msg", v)


def deploy_type(l, style):
    if l["kind"] == "conv":
        return "HoleConvolution" if (l["d"] > 1 and style == "old") else "Convolution"
    return dict(bn="BN", relu="ReLU", pool="Pooling", eltwise="Eltwise", concat="Concat",
                interp="Interp", dropout="Dropout", split="Split")[l["kind"]]


def layer_params(l, style):
    """The ParamSpecs and the *_param message of a deploy layer, authors' order."""
    nums = NUMBERS[style]
    k = l["kind"]
    if k == "conv":
        specs = [param_spec(l["lr"], 1)] + ([param_spec(2 * l["lr"], 1)] if l["bias"] else [])
        c = [F("num_output", 1, "uint", l["cout"])]
        pad = [F("pad", 3, "uint", l["p"])]
        if l["d"] > 1:
            pad.append(F(nums["dilation"][0], nums["dilation"][1], "uint", l["d"]))
        geom = [F("kernel_size", 4, "uint", l["k"]), F("stride", 6, "uint", l["s"])]
        # The authors' orders: backbone "pad [hole|dilation] kernel_size stride",
        # conv5_4 "kernel_size stride pad", pyramid convs and conv6 no pad at all.
        c += {"before": pad + geom, "after": geom + pad, None: geom}[l["pad_pos"]]
        c.append(filler("weight_filler", 7, "msra"))
        if not l["bias"]:
            c.append(F("bias_term", 2, "bool", False))
        return specs, [F("convolution_param", 106, "msg", c)]
    if k == "bn":
        lr = l["lr"]
        specs = [param_spec(lr, 0), param_spec(lr, 0), param_spec(0, 0), param_spec(0, 0)]
        b = nums["bn"]
        if style == "new":
            m = [filler("slope_filler", b["slope_filler"], "constant", 1.0),
                 filler("bias_filler", b["bias_filler"], "constant", 0.0),
                 F("frozen", b["frozen"], "bool", True), F("momentum", b["momentum"], "float", 0.95)]
        else:
            m = [filler("scale_filler", b["scale_filler"], "constant", 1.0),
                 filler("shift_filler", b["shift_filler"], "constant", 0.0),
                 F("moving_average", b["moving_average"], "bool", True), F("decay", b["decay"], "float", 0.05)]
        if l["name"] == "conv5_4/bn":
            m.append(F("eps", b["eps"], "float", EPS_CONV5_4))
        return specs, [F("bn_param", nums["bn_param"], "msg", m)]
    if k == "pool":
        m = [F("pool", 1, "enum", (l["method"], 0 if l["method"] == "MAX" else 1))]
        if l["kh"] == l["kw"] and l["sh"] == l["sw"]:
            m += [F("kernel_size", 2, "uint", l["kh"]), F("stride", 3, "uint", l["sh"])]
        else:
            m += [F("kernel_h", 5, "uint", l["kh"]), F("kernel_w", 6, "uint", l["kw"]),
                  F("stride_h", 7, "uint", l["sh"]), F("stride_w", 8, "uint", l["sw"])]
        if l["p"]:
            m.append(F("pad", 4, "uint", l["p"]))
        return [], [F("pooling_param", 121, "msg", m)]
    if k == "eltwise":
        return [], [F("eltwise_param", 110, "msg", [F("operation", 1, "enum", ("SUM", 1))])]
    if k == "dropout":
        return [], [F("dropout_param", 108, "msg", [F("dropout_ratio", 1, "float", 0.1)])]
    if k == "interp":
        if "zoom" in l:
            m = [F("zoom_factor", 3, "uint", l["zoom"])]
        else:
            m = [F("height", 1, "uint", l["height"]), F("width", 2, "uint", l["width"])]
        return [], [F("interp_param", nums["interp_param"], "msg", m)]
    return [], []


def blob_arrays(l, params):
    q = params[l["name"]]
    if l["kind"] == "conv":
        return [q["w"]] + ([q["b"]] if q["b"] is not None else [])
    c = q["slope"].size
    return [a.reshape(1, c, 1, 1) for a in (q["slope"], q["bias"], q["mean"], q["var"])]


def blob_fields(a, legacy):
    if legacy:
        dims = list(a.shape)
        dims = [1] * (4 - len(dims)) + dims  # a bias [N] -> 1x1x1xN, as old Caffe stored it
        f = [F("num", 1, "uint", dims[0]), F("channels", 2, "uint", dims[1]),
             F("height", 3, "uint", dims[2]), F("width", 4, "uint", dims[3])]
    else:
        f = [F("shape", 7, "msg", [F("dim", 1, "dims", list(a.shape))])]
    return F("blobs", 7, "msg", f + [F("data", 5, "floats", a.ravel())])


def deploy_caffemodel(net, layers, style):
    out = [F("name", 1, "string", net.cfg["net_name"]), F("input", 3, "string", "data")]
    for l in insert_splits(layers):
        f = [F("name", 1, "string", l["name"]), F("type", 2, "string", deploy_type(l, style))]
        f += [F("bottom", 3, "string", b) for b in l["bottoms"]]
        f += [F("top", 4, "string", t) for t in l["tops"]]
        specs, msgs = layer_params(l, style)
        f += specs
        if l["kind"] in ("conv", "bn"):
            f += [blob_fields(a, False) for a in blob_arrays(l, net.params)]
        f.append(F("phase", 10, "enum", ("TEST", 1)))
        f += msgs
        out.append(F("layer", 100, "msg", f))
    return encode(out)


def release_caffemodel(net, layers, legacy):
    out = [F("name", 1, "string", net.cfg["net_name"])]
    for l in layers:
        if l["kind"] == "conv":
            t = "HoleConvolutionData" if l["d"] > 1 else "ConvolutionData"
        elif l["kind"] == "bn":
            t = "BNData"
        else:
            t = deploy_type(l, "new")
        f = [F("name", 1, "string", l["name"]), F("type", 2, "string", t)]
        f += [F("bottom", 3, "string", b) for b in l["bottoms"]]
        f += [F("top", 4, "string", x) for x in l["tops"]]
        if l["kind"] in ("conv", "bn"):
            f += [blob_fields(a, legacy) for a in blob_arrays(l, net.params)]
        if l["name"] == "conv5_4/bn":
            # The one non-default eps travels with the weights (fork numbering
            # of c479f4fe), so that all three inputs give the same logits.
            f.append(F("bn_param", 152, "msg", [F("eps", 4, "float", EPS_CONV5_4)]))
        out.append(F("layer", 100, "msg", f))
    return encode(out)


def prototxt(net, layers, style, deploy_hw):
    s = ['#\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: %d\ninput_dim: %d\n\n' % deploy_hw]
    if style == "old":
        s.append("## NETWORK ###\n\n")
    for l in layers:
        f = [F("name", 1, "string", l["name"]), F("type", 2, "string", deploy_type(l, style))]
        f += [F("bottom", 3, "string", b) for b in l["bottoms"]]
        f += [F("top", 4, "string", t) for t in l["tops"]]
        specs, msgs = layer_params(l, style)
        s.append(text([F("layer", 100, "msg", f + specs + msgs)]))
    return "".join(s)


# ----------------------------------------------------------------------------
# Independent decoders (self-test): protobuf wire, NetParameter, text format
# ----------------------------------------------------------------------------

def wire_fields(buf):
    i, out = 0, []
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 1:
            v, i = buf[i: i + 8], i + 8
        elif wt == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i: i + n], i + n
        elif wt == 5:
            v, i = buf[i: i + 4], i + 4
        else:
            raise ValueError("wire type %d at %d" % (wt, i))
        out.append((num, wt, v))
    return out


def read_varint(buf, i):
    shift = v = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def packed_varints(b):
    out, i = [], 0
    while i < len(b):
        v, i = read_varint(b, i)
        out.append(v)
    return out


def decode_blob(buf):
    data, shape, legacy = [], None, [None] * 4
    for num, wt, v in wire_fields(buf):
        if num == 5:
            data.append(np.frombuffer(v, dtype="<f4"))  # packed (wire type 2) or one fixed32
        elif num == 7:
            shape = []
            for n2, w2, v2 in wire_fields(v):
                shape += packed_varints(v2) if w2 == 2 else [v2]
        elif 1 <= num <= 4:
            legacy[num - 1] = v
    data = np.concatenate(data).astype(np.float64) if data else np.zeros(0)
    if shape is None:
        shape = [d or 1 for d in legacy]
    return data.reshape(shape)


def decode_sub(buf):
    """Generic: {num: [values]} with wire values (ints, bytes)."""
    d = {}
    for num, wt, v in wire_fields(buf):
        d.setdefault(num, []).append((wt, v))
    return d


def decode_caffemodel(buf):
    net = dict(name=None, layers=[])
    for num, wt, v in wire_fields(buf):
        if num == 1:
            net["name"] = v.decode()
        elif num == 100:
            l = dict(name=None, type=None, bottoms=[], tops=[], blobs=[], phase=None, p={})
            for n2, w2, v2 in wire_fields(v):
                if n2 == 1:
                    l["name"] = v2.decode()
                elif n2 == 2:
                    l["type"] = v2.decode()
                elif n2 == 3:
                    l["bottoms"].append(v2.decode())
                elif n2 == 4:
                    l["tops"].append(v2.decode())
                elif n2 == 7:
                    l["blobs"].append(decode_blob(v2))
                elif n2 == 10:
                    l["phase"] = v2
                elif n2 >= 100:
                    l["p"][n2] = decode_sub(v2)
            net["layers"].append(l)
    return net


def sub_int(d, num, default):
    return d[num][-1][1] if num in d else default


def sub_float(d, num, default):
    return struct.unpack("<f", d[num][-1][1])[0] if num in d else default


def binary_layer_config(l, style):
    """Geometry/params of a decoded deploy layer, per numbering style."""
    nums = NUMBERS[style]
    p = l["p"]
    cfg = {}
    if 106 in p:
        c = p[106]
        cfg.update(pad=sub_int(c, 3, 0), stride=sub_int(c, 6, 1), dil=sub_int(c, nums["dilation"][1], 1))
    if 121 in p:
        c = p[121]
        k = sub_int(c, 2, None)
        s = sub_int(c, 3, 1)
        cfg.update(method=sub_int(c, 1, 0), kh=sub_int(c, 5, k), kw=sub_int(c, 6, k),
                   sh=sub_int(c, 7, s), sw=sub_int(c, 8, s), pad=sub_int(c, 4, 0))
    if nums["interp_param"] in p:
        c = p[nums["interp_param"]]
        cfg.update(height=sub_int(c, 1, None), width=sub_int(c, 2, None), zoom=sub_int(c, 3, None))
    if nums["bn_param"] in p:
        c = p[nums["bn_param"]]
        cfg.update(eps=sub_float(c, nums["bn"]["eps"], 1e-5))
    return cfg


def tokenize(s):
    toks, i = [], 0
    while i < len(s):
        ch = s[i]
        if ch.isspace():
            i += 1
        elif ch == "#":
            while i < len(s) and s[i] != "\n":
                i += 1
        elif ch in "{}:":
            toks.append(ch)
            i += 1
        elif ch == '"':
            j = s.index('"', i + 1)
            toks.append(("str", s[i + 1: j]))
            i = j + 1
        else:
            j = i
            while j < len(s) and not s[j].isspace() and s[j] not in '{}:"#':
                j += 1
            toks.append(s[i:j])
            i = j
    return toks


def parse_text(toks, i=0, stop=None):
    """Text format -> list of (key, value) where value is str/number/list."""
    out = []
    while i < len(toks) and toks[i] != stop:
        key = toks[i]
        i += 1
        if toks[i] == ":":
            i += 1
        if toks[i] == "{":
            v, i = parse_text(toks, i + 1, "}")
            i += 1
        else:
            v = toks[i]
            i += 1
            if isinstance(v, tuple):
                v = v[1]
        out.append((key, v))
    return out, i


def tget(items, key, default=None, conv=str):
    vals = [v for k, v in items if k == key]
    return conv(vals[-1]) if vals else default


def prototxt_layers(path):
    items, _ = parse_text(tokenize(open(path).read()))
    dims = [int(v) for k, v in items if k == "input_dim"]
    layers = []
    for k, v in items:
        if k != "layer":
            continue
        l = dict(name=tget(v, "name"), type=tget(v, "type"), bottoms=[b for kk, b in v if kk == "bottom"],
                 tops=[t for kk, t in v if kk == "top"], cfg={})
        for kk, sub in v:
            if kk == "convolution_param":
                l["cfg"].update(pad=tget(sub, "pad", 0, int), stride=tget(sub, "stride", 1, int),
                                dil=tget(sub, "dilation", tget(sub, "hole", 1, int), int))
            elif kk == "pooling_param":
                k_ = tget(sub, "kernel_size", None, int)
                s_ = tget(sub, "stride", 1, int)
                l["cfg"].update(method=0 if tget(sub, "pool") == "MAX" else 1,
                                kh=tget(sub, "kernel_h", k_, int), kw=tget(sub, "kernel_w", k_, int),
                                sh=tget(sub, "stride_h", s_, int), sw=tget(sub, "stride_w", s_, int),
                                pad=tget(sub, "pad", 0, int))
            elif kk == "interp_param":
                l["cfg"].update(height=tget(sub, "height", None, int), width=tget(sub, "width", None, int),
                                zoom=tget(sub, "zoom_factor", None, int))
            elif kk == "bn_param":
                l["cfg"].update(eps=tget(sub, "eps", 1e-5, float))
        layers.append(l)
    return dims, layers


def run_graph(layers, blobs_of, x):
    """Execute a Caffe layer list generically (no knowledge of PSPNet)."""
    blobs = {"data": x}
    for l in layers:
        t, cfg = l["type"], l["cfg"]
        ins = [blobs[b] for b in l["bottoms"]]
        if t in ("Convolution", "HoleConvolution"):
            bl = blobs_of(l["name"])
            w = bl[0]
            b = bl[1].ravel() if len(bl) > 1 else None
            y = conv2d(ins[0], w, b, cfg["stride"], cfg["pad"], cfg["dil"])
        elif t == "BN":
            s, b, m, v = [a.ravel() for a in blobs_of(l["name"])]
            y = batch_norm(ins[0], s, b, m, v, float(np.float32(cfg.get("eps", 1e-5))))
        elif t == "ReLU":
            y = relu(ins[0])
        elif t == "Pooling":
            if cfg["method"] == 0:
                assert cfg["kh"] == cfg["kw"] and cfg["sh"] == cfg["sw"]
                y = caffe_max_pool(ins[0], cfg["kh"], cfg["sh"], cfg["pad"])
            else:
                y = caffe_ave_pool(ins[0], cfg["kh"], cfg["kw"], cfg["sh"], cfg["sw"], cfg["pad"])
        elif t == "Eltwise":
            y = sum(ins[1:], ins[0])
        elif t == "Concat":
            y = np.concatenate(ins, axis=1)
        elif t == "Interp":
            h, w = ins[0].shape[2:]
            if cfg.get("zoom"):
                y = interp(ins[0], (h - 1) * cfg["zoom"] + 1, (w - 1) * cfg["zoom"] + 1)
            else:
                y = interp(ins[0], cfg["height"], cfg["width"])
        elif t == "Dropout":
            y = ins[0]
        elif t == "Split":
            for top in l["tops"]:
                blobs[top] = ins[0]
            continue
        else:
            raise ValueError(t)
        blobs[l["tops"][0]] = y
    return y


# ----------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------

def parse_hw(s):
    h, w = s.lower().split("x")
    return int(h), int(w)


def build(arch, full):
    net = PSPNet(arch, full)
    net.calibrate()
    return net


def write_arch(arch, args, out, sizes):
    t0 = time.time()
    net = build(arch, args.full_width)
    deploy_feat = feature_size(*args.deploy)
    style = net.cfg["style"]
    main = layer_list(net, deploy_feat, aux=False)
    with_aux = layer_list(net, deploy_feat, aux=True)
    files = {
        "%s_deploy.caffemodel" % arch: deploy_caffemodel(net, main, style),
        "%s_release.caffemodel" % arch: release_caffemodel(net, with_aux, net.cfg["legacy_release_dims"]),
        "%s.prototxt" % arch: prototxt(net, main, style, args.deploy).encode(),
    }
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as fh:
            fh.write(data)
    print("%s: calibrated and wrote models in %.1fs" % (arch, time.time() - t0))
    for hw in sizes:
        t1 = time.time()
        png = os.path.join(out, "input_%dx%d.png" % hw)
        x = preprocess(np.asarray(Image.open(png).convert("RGB")))
        mode = "caffe" if hw == args.deploy else "adaptive"
        logits, _ = net.forward(x, mode=mode, deploy_feat=deploy_feat)
        assert np.isfinite(logits).all()
        np.save(os.path.join(out, "%s_%dx%d.npy" % (arch, hw[0], hw[1])), logits.astype(np.float32))
        print("  %dx%d (%s): logits %s, |max| %.3f, std %.3f, %.1fs" % (
            hw[0], hw[1], mode, logits.shape, np.abs(logits).max(), logits.std(), time.time() - t1))


def input_seed(hw):
    return 1000 * hw[0] + hw[1]


def self_test(args):
    ok = True

    def check(name, a, b, tol=1e-9):
        nonlocal ok
        err = float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))) \
            if np.shape(a) == np.shape(b) else float("inf")
        scale = max(1.0, float(np.max(np.abs(b))) if np.size(b) else 1.0)
        good = err <= tol * scale
        ok &= good
        print("%-58s %s (max err %.2e)" % (name, "ok" if good else "FAIL", err))

    rng = np.random.default_rng(0)
    # Pooling / interp arithmetic without torch.
    check("caffe max-pool output size 38 -> 20 (ceil mode)", caffe_pool_size(38, 3, 2, 1), 20)
    check("conv vs naive loop (stride 2, pad 1, dilation 2)", *naive_conv_pair(rng))
    try:
        import torch
        import torch.nn.functional as tf
    except ImportError:
        torch = None
        print("torch not installed: skipping the torch comparisons")
    if torch is not None:
        T = lambda a: torch.from_numpy(a)
        for (h, w, s, p, d) in [(13, 11, 1, 1, 1), (13, 11, 2, 1, 1), (12, 9, 1, 2, 2), (12, 12, 1, 4, 4),
                                (23, 23, 2, 0, 1)]:
            k = 1 if (p == 0) else 3
            x = rng.standard_normal((2, 5, h, w))
            wt = rng.standard_normal((7, 5, k, k))
            b = rng.standard_normal(7)
            check("conv2d %dx%d k%d s%d p%d d%d vs torch" % (h, w, k, s, p, d),
                  conv2d(x, wt, b, s, p, d), tf.conv2d(T(x), T(wt), T(b), s, p, d).numpy())
        for (h, w) in [(38, 31), (45, 45), (357, 357), (8, 9)]:
            x = rng.standard_normal((1, 3, h, w))
            check("max_pool k3 s2 p1 ceil %dx%d vs torch" % (h, w), caffe_max_pool(x, 3, 2, 1),
                  tf.max_pool2d(T(x), 3, 2, 1, ceil_mode=True).numpy())
        for (h, w, k) in [(12, 12, 4), (12, 12, 6), (60, 60, 20), (10, 8, 3)]:
            x = rng.standard_normal((1, 3, h, w))
            check("ave_pool k%d %dx%d vs torch (ceil, count_include_pad)" % (k, h, w),
                  caffe_ave_pool(x, k, k, k, k, 0),
                  tf.avg_pool2d(T(x), k, k, 0, ceil_mode=True, count_include_pad=True).numpy())
        x = rng.standard_normal((1, 3, 11, 9))
        check("ave_pool k3 s2 p1 11x9 vs torch", caffe_ave_pool(x, 3, 3, 2, 2, 1),
              tf.avg_pool2d(T(x), 3, 2, 1, ceil_mode=True, count_include_pad=True).numpy())
        for (h, w, b) in [(10, 8, 6), (10, 8, 3), (12, 12, 6), (7, 13, 2), (10, 8, 1)]:
            x = rng.standard_normal((1, 3, h, w))
            check("adaptive_avg_pool %dx%d -> %d vs torch" % (h, w, b), adaptive_ave_pool(x, b),
                  tf.adaptive_avg_pool2d(T(x), b).numpy())
        for (h, w, ho, wo) in [(1, 1, 12, 12), (2, 2, 10, 8), (6, 6, 10, 8), (12, 12, 89, 89),
                               (10, 8, 75, 61), (3, 3, 3, 3)]:
            x = rng.standard_normal((1, 3, h, w))
            check("interp %dx%d -> %dx%d vs torch align_corners" % (h, w, ho, wo), interp(x, ho, wo),
                  tf.interpolate(T(x), size=(ho, wo), mode="bilinear", align_corners=True).numpy())
        x = rng.standard_normal((2, 4, 5, 5))
        s, bb, m, v = rng.uniform(0.5, 1.5, 4), rng.normal(0, 1, 4), rng.normal(0, 1, 4), rng.uniform(0.1, 2, 4)
        check("batch_norm vs torch eval", batch_norm(x, s, bb, m, v, 1e-4),
              tf.batch_norm(T(x), T(m), T(v), T(s), T(bb), False, 0.0, 1e-4).numpy())

    out = args.out
    for arch in args.arch:
        net = build(arch, args.full_width)
        style = net.cfg["style"]
        deploy_feat = feature_size(*args.deploy)
        spec = insert_splits(layer_list(net, deploy_feat, aux=False))
        # 1. deploy caffemodel: names, types, bottoms/tops, blob shapes and values round-trip.
        dep = decode_caffemodel(open(os.path.join(out, "%s_deploy.caffemodel" % arch), "rb").read())
        same = [(l["name"], l["type"], l["bottoms"], l["tops"]) for l in dep["layers"]] == \
               [(l["name"], deploy_type(l, style), l["bottoms"], l["tops"]) for l in spec]
        check("%s deploy: %d layers round-trip (names/types/blobs)" % (arch, len(spec)), int(same), 1)
        nblob = 0
        for l, d in zip(spec, dep["layers"]):
            want = blob_arrays(l, net.params) if l["kind"] in ("conv", "bn") else []
            assert len(want) == len(d["blobs"]), l["name"]
            for a, b in zip(want, d["blobs"]):
                assert a.shape == b.shape and np.array_equal(a, b), l["name"]
                nblob += 1
            assert d["phase"] == 1
        print("    %d blobs equal, every layer phase TEST" % nblob)
        # Each produced blob version is read at most once after the splits.
        reads = {}
        last = {"data": "data"}
        for l in dep["layers"]:
            for b in l["bottoms"]:
                reads[last[b]] = reads.get(last[b], 0) + 1
            for t in l["tops"]:
                last[t] = (l["name"], t)
        check("%s deploy: every blob read at most once (splits)" % arch, max(reads.values()), 1)
        # 2. execute the decoded deploy graph; 3. prototxt + release weights.
        blobs = {l["name"]: l["blobs"] for l in dep["layers"]}
        for l in dep["layers"]:
            l["cfg"] = binary_layer_config(l, style)
        rel = decode_caffemodel(open(os.path.join(out, "%s_release.caffemodel" % arch), "rb").read())
        rel_blobs = {l["name"]: l["blobs"] for l in rel["layers"]}
        rel_types = {l["type"] for l in rel["layers"]}
        has_params = any(l["p"] for l in rel["layers"] if l["name"] != "conv5_4/bn")
        check("%s release: no *_param but conv5_4/bn's eps, types %s" % (arch, sorted(t for t in rel_types if "Data" in t)),
              int(not has_params), 1)
        dims, proto = prototxt_layers(os.path.join(out, "%s.prototxt" % arch))
        check("%s prototxt: input_dim" % arch, dims, [1, 3, args.deploy[0], args.deploy[1]])
        hw = args.deploy
        png = os.path.join(out, "input_%dx%d.png" % hw)
        expected = os.path.join(out, "%s_%dx%d.npy" % (arch, hw[0], hw[1]))
        if os.path.exists(png) and os.path.exists(expected):
            x = preprocess(np.asarray(Image.open(png).convert("RGB")))
            want = np.load(expected).astype(np.float64)
            check("%s deploy caffemodel graph vs %s" % (arch, os.path.basename(expected)),
                  run_graph(dep["layers"], lambda n: blobs[n], x), want, 2e-6)
            check("%s prototxt + release weights vs expected" % arch,
                  run_graph(proto, lambda n: rel_blobs[n], x), want, 2e-6)
            check("%s structured forward: caffe == adaptive at deploy size" % arch,
                  net.forward(x, "caffe", deploy_feat)[0], net.forward(x, "adaptive")[0], 1e-10)
            no_eps = [dict(l, cfg=dict(l["cfg"], eps=1e-5)) if l["type"] == "BN" else l for l in dep["layers"]]
            diff = np.abs(run_graph(no_eps, lambda n: blobs[n], x) - want).max()
            print("    conv5_4/bn eps ignored -> logits differ by %.3f (must be large)" % diff)
            ok &= diff > 1e-2
        for l in rel["layers"]:
            if l["type"].endswith("Data"):
                assert l["name"] in blobs or l["name"].startswith(("conv4_%d" % (net.cfg["blocks"][2] + 1),
                                                                    "conv6_1")), l["name"]
    print("self-test", "passed" if ok else "FAILED")
    return ok


def naive_conv_pair(rng):
    x = rng.standard_normal((1, 2, 7, 6))
    w = rng.standard_normal((3, 2, 3, 3))
    s, p, d = 2, 1, 2
    ho = (7 + 2 * p - (d * 2 + 1)) // s + 1
    wo = (6 + 2 * p - (d * 2 + 1)) // s + 1
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ref = np.zeros((1, 3, ho, wo))
    for o in range(3):
        for i in range(ho):
            for j in range(wo):
                for c in range(2):
                    for a in range(3):
                        for b in range(3):
                            ref[0, o, i, j] += w[o, c, a, b] * xp[0, c, i * s + a * d, j * s + b * d]
    return conv2d(x, w, None, s, p, d), ref


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", action="append", type=parse_hw,
                    help="HxW input sizes for logits (default 89x89 and 75x61)")
    ap.add_argument("--deploy", type=parse_hw, default=(89, 89), help="deploy size (default 89x89)")
    ap.add_argument("--arch", action="append", choices=sorted(ARCHS))
    ap.add_argument("--full-width", action="store_true",
                    help="the real widths (64/64, pyramid 512, classes 150/21/19); no logits unless --size")
    ap.add_argument("--self-test", action="store_true",
                    help="check the numpy layers (against torch if present) and decode the files in --out")
    args = ap.parse_args()
    args.arch = args.arch or list(ARCHS)
    if args.self_test:
        sys.exit(0 if self_test(args) else 1)
    if args.size is None:
        args.size = [] if args.full_width else [(89, 89), (75, 61)]
    os.makedirs(args.out, exist_ok=True)
    for hw in args.size:
        Image.fromarray(natural_image(hw[0], hw[1], input_seed(hw)), "RGB").save(
            os.path.join(args.out, "input_%dx%d.png" % hw))
    for arch in args.arch:
        write_arch(arch, args, args.out, args.size)


if __name__ == "__main__":
    main()
