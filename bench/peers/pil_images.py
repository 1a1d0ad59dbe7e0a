"""PIL + torchvision peer for bench/images.bench.mjs: images/s of decoding + preprocessing.

    /usr/bin/python3 bench/peers/pil_images.py MODE PRESET WORKERS BATCH SECONDS FILE...

MODE    full: Image.open(f).convert('RGB') + transforms; pre: transforms only, on images
        decoded beforehand (what anomalens' preprocessImages does).
PRESET  imagenet: Resize(256) + CenterCrop(224); square256: Resize([256, 256]). Both then
        ToTensor + Normalize(ImageNet), stacked into one batch tensor per BATCH files.
WORKERS 0: in this process (one core); n > 0: a torch DataLoader with n worker processes
        (persistent, warmed up first), the usual way to use more cores.
Prints one JSON line: {"imagesPerSecond": x, "passes": n} over the median pass through FILE...
"""
import json
import statistics
import sys
import time

import torch
import torchvision.transforms as T
from PIL import Image

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def transform(preset):
    geo = [T.Resize(256), T.CenterCrop(224)] if preset == 'imagenet' else [T.Resize([256, 256])]
    return T.Compose(geo + [T.ToTensor(), T.Normalize(MEAN, STD)])


class Files(torch.utils.data.Dataset):
    def __init__(self, files, tf):
        self.files, self.tf = files, tf

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return self.tf(Image.open(self.files[i]).convert('RGB'))


def main():
    mode, preset, workers, batch, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    files = sys.argv[6:]
    torch.set_num_threads(1)
    tf = transform(preset)
    if mode == 'pre':
        decoded = []
        for f in files:
            im = Image.open(f).convert('RGB')
            im.load()
            decoded.append(im)

        def one_pass():
            for i in range(0, len(decoded), batch):
                torch.stack([tf(im) for im in decoded[i:i + batch]])
    elif workers == 0:
        def one_pass():
            for i in range(0, len(files), batch):
                torch.stack([tf(Image.open(f).convert('RGB')) for f in files[i:i + batch]])
    else:
        loader = torch.utils.data.DataLoader(Files(files, tf), batch_size=batch, num_workers=workers,
                                             persistent_workers=True, prefetch_factor=2)

        def one_pass():
            for _ in loader:
                pass

    one_pass()  # warm-up (and worker start-up)
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t = time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - t)
    print(json.dumps({'imagesPerSecond': len(files) / statistics.median(times), 'passes': len(times)}))


if __name__ == '__main__':
    main()
