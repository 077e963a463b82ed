"""The torch networks inside the trainable towers (:mod:`workbench.models.towers`): each maps a batch to tokens and
a mask of real tokens. Image networks are region networks (:class:`RegionNet`): the cells of their last feature map,
projected, are the region tokens. Text networks embed ids and run a bidirectional RNN over the real tokens.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def _region_tokens(features: torch.Tensor, proj: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The cells of the last feature map, projected, as region tokens (all real)."""
    tokens = proj(features.flatten(2).transpose(1, 2))
    return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)


class RegionNet(nn.Module):
    """A CNN whose last feature map's cells, projected by ``proj``, are the region tokens."""

    proj: nn.Linear

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) activations of the last stage."""
        raise NotImplementedError

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _region_tokens(self.feature_map(pixels), self.proj)


class ConvNet(RegionNet):
    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        channels = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
            layers += [conv, nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(channels[-1], dim)

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.features(pixels)


class _BiRNNText(nn.Module):
    """Embedding → bidirectional RNN → per-token projection; padded positions are zeroed and masked out."""

    embed: nn.Embedding
    proj: nn.Linear

    def _rnn(self) -> nn.RNNBase:
        raise NotImplementedError

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        packed = pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, _ = self._rnn()(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=ids.shape[1])
        mask = torch.arange(ids.shape[1], device=ids.device)[None] < lengths.to(ids.device)[:, None]
        return self.proj(states) * mask.unsqueeze(-1), mask


class CharGRU(_BiRNNText):
    # attribute names are the state-dict keys of saved towers: keep "gru"
    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.gru = nn.GRU(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden, dim)

    def _rnn(self) -> nn.RNNBase:
        return self.gru


class VGGNet(RegionNet):
    def __init__(self, width: int, blocks: int, convs: int, dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for k in range(blocks):
            c_out = width * 2 ** min(k, 3)
            for _ in range(convs):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
                c_in = c_out
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(c_in, dim)

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.features(pixels)


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3×3 convs with a (projected, when the shape changes) identity shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(RegionNet):
    def __init__(self, width: int, blocks: int, depth: int, dim: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages: list[nn.Module] = []
        c_in = width
        for k in range(blocks):
            c_out = width * 2 ** min(k, 3)
            stages += [BasicBlock(c_in, c_out, 2)] + [BasicBlock(c_out, c_out, 1) for _ in range(depth - 1)]
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.proj = nn.Linear(c_in, dim)

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(pixels))


class WordLSTM(_BiRNNText):
    # attribute names are the state-dict keys of saved towers: keep "lstm"
    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden, dim)

    def _rnn(self) -> nn.RNNBase:
        return self.lstm
