"""A small U-Net of Cellpose's design (cellpose.resnet_torch.CPnet, v3), 1 input channel.

Residual blocks of BatchNorm -> ReLU -> 3x3 conv, max-pool down-sampling, nearest
up-sampling, skip connections added to the decoder, and a global "style" vector
(L2-normalised global average of the bottleneck) injected into every decoder block.
Output channels: [dY, dX, cellprob logit]; flows are trained against 5 x unit flows.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def batchconv(cin, cout, k):  # BN -> ReLU -> conv (pre-activation, as Cellpose)
    return nn.Sequential(nn.BatchNorm2d(cin, eps=1e-5, momentum=0.05), nn.ReLU(inplace=True),
                         nn.Conv2d(cin, cout, k, padding=k // 2))


def batchconv0(cin, cout, k):  # BN -> conv (projection shortcut)
    return nn.Sequential(nn.BatchNorm2d(cin, eps=1e-5, momentum=0.05),
                         nn.Conv2d(cin, cout, k, padding=k // 2))


class ResDown(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.proj = batchconv0(cin, cout, 1)
        self.conv = nn.ModuleList([batchconv(cin if i == 0 else cout, cout, 3) for i in range(4)])

    def forward(self, x):
        x = self.proj(x) + self.conv[1](self.conv[0](x))
        return x + self.conv[3](self.conv[2](x))


class BatchConvStyle(nn.Module):
    def __init__(self, cin, cout, style_ch):
        super().__init__()
        self.full = nn.Linear(style_ch, cin)
        self.conv = batchconv(cin, cout, 3)

    def forward(self, style, x, y=None):
        if y is not None:
            x = x + y
        return self.conv(x + self.full(style)[:, :, None, None])


class ResUp(nn.Module):
    def __init__(self, cin, cout, style_ch):
        super().__init__()
        self.conv0 = batchconv(cin, cout, 3)
        self.conv1 = BatchConvStyle(cout, cout, style_ch)
        self.conv2 = BatchConvStyle(cout, cout, style_ch)
        self.conv3 = BatchConvStyle(cout, cout, style_ch)
        self.proj = batchconv0(cin, cout, 1)

    def forward(self, x, y, style):
        x = self.proj(x) + self.conv1(style, self.conv0(x), y=y)
        return x + self.conv3(style, self.conv2(style, x))


class FlowUNet(nn.Module):
    def __init__(self, nin=1, nout=3, widths=(16, 32, 64, 128)):
        super().__init__()
        self.widths = tuple(widths)
        chans = (nin,) + self.widths
        self.down = nn.ModuleList([ResDown(chans[i], chans[i + 1]) for i in range(len(widths))])
        style_ch = widths[-1]
        ups = []
        for i in range(len(widths) - 1, -1, -1):  # deepest first
            cin = widths[i] if i == len(widths) - 1 else widths[i + 1]
            ups.append(ResUp(cin, widths[i], style_ch))
        self.up = nn.ModuleList(ups)
        self.output = batchconv(widths[0], nout, 1)

    def forward(self, x):
        feats = []
        for i, blk in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = blk(x)
            feats.append(x)
        style = x.mean(dim=(2, 3))
        style = style / torch.sqrt((style ** 2).sum(dim=1, keepdim=True) + 1e-12)
        y = self.up[0](x, x, style)  # bottleneck: skip = itself (as CPnet)
        for j, blk in enumerate(self.up[1:], start=1):
            y = F.interpolate(y, scale_factor=2.0, mode="nearest")
            y = blk(y, feats[len(feats) - 1 - j], style)
        return self.output(y)


def count_params(m):
    return sum(p.numel() for p in m.parameters())
