// Training ops of the native core: forward/backward pairs behind one signature, CPU through
// oneDNN's forward-training and backward primitives.
//
// Conventions (as every inference op): float32, NCHW, contiguous by default (convolutions and
// batch norm also take oneDNN's blocked nChw16c, see Layout); plain pointers + sizes; the
// caller owns every output buffer; failures throw anomalens::Error. A backward takes the
// activations its forward kept (named in each comment) and the gradient of the output, and
// writes the gradients of the inputs and parameters. A null output pointer means "not wanted"
// (e.g. dx of the first layer, dw of a frozen layer): that gradient is not computed.
// Gradients are written (overwritten), never accumulated; to accumulate use accumulate().
// Every op calls applyThreads() and is safe to run on any thread, several at once.
//
// Example (a conv layer with bias, loss gradient dy):
//   Conv2dShape s{n, c, h, w, k, 3, 3, 1, 1};
//   conv2dForward(s, x, w, b, y);                // y: n * k * s.oh() * s.ow()
//   conv2dBackward(s, x, w, dy, dx, dw, db);     // dx: n*c*h*w, dw: k*c*3*3, db: k
#pragma once
#include <cstdint>

#include "anomalens/train/params.h"

namespace anomalens::train {

// The memory layout of an activation [n, c, h, w]. Nchw: plain, the default of every op.
// Blocked16: oneDNN's nChw16c (aBcd16b): the channels in blocks of 16, each block stored
// [n][c / 16][h][w][16], the layout oneDNN's AVX-512 convolutions and batch norm run in. It
// needs c % 16 == 0 (then it holds exactly n * c * h * w floats, so the element-wise ops -- ReLU,
// add, accumulate -- run on it unchanged). A network that keeps its activations blocked from
// layer to layer skips the reorders each op would otherwise make in and out of its call.
enum class Layout { Nchw, Blocked16 };

// y = x in layout `to`, x [n, c, h, w] in layout `from` (y may not alias x).
void reorderLayout(int64_t n, int64_t c, int64_t h, int64_t w, Layout from, Layout to, const float* x, float* y);

// A 2-D convolution as torch.nn.Conv2d(c, k, (kh, kw), stride, padding, bias) (no groups, no
// dilation). Input [n, c, h, w]; weight [k, c, kh, kw]; bias [k]; output [n, k, oh, ow] with
// oh = floor((h + 2 padH - kh) / strideH) + 1.
struct Conv2dShape {
  int64_t n = 1, c = 1, h = 1, w = 1;  // input
  int64_t k = 1;                       // output channels
  int64_t kh = 1, kw = 1;
  int64_t strideH = 1, strideW = 1;
  int64_t padH = 0, padW = 0;
  Layout src = Layout::Nchw;  // of x and dx
  Layout dst = Layout::Nchw;  // of y and dy
  int64_t oh() const { return (h + 2 * padH - kh) / strideH + 1; }
  int64_t ow() const { return (w + 2 * padW - kw) / strideW + 1; }
  // Throws InvalidArgument naming the offending size when the shape is not usable.
  void check() const;
};

// y = conv(x, w) + b. x: n*c*h*w, w: k*c*kh*kw, b: k or null, y: n*k*oh*ow.
void conv2dForward(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y);
// Keeps: x and w. dx: n*c*h*w, dw: k*c*kh*kw, db: k (each may be null).
void conv2dBackward(const Conv2dShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                    float* db);
// The same with the weights a parameter [k, c, kh, kw] (params.h), no bias: the convolution
// keeps the parameter stored in the layout its kernels read (no reorder of the weights per call;
// its optimiser steps run on that storage) and writes dw into the parameter's gradient
// (wantDw). The network classes use these.
void conv2dForward(const Conv2dShape& s, const float* x, Param& w, float* y);
void conv2dBackward(const Conv2dShape& s, const float* x, Param& w, const float* dy, float* dx, bool wantDw);

// A 2-D transposed convolution as torch.nn.ConvTranspose2d(c, k, (kh, kw), stride, padding,
// bias) with PyTorch's weight layout [c (in), k (out), kh, kw]. Output [n, k, oh, ow] with
// oh = (h - 1) * strideH - 2 padH + kh (Reverse Distillation: 2x2 stride 2 doubles h and w).
struct ConvTranspose2dShape {
  int64_t n = 1, c = 1, h = 1, w = 1;
  int64_t k = 1;
  int64_t kh = 2, kw = 2;
  int64_t strideH = 2, strideW = 2;
  int64_t padH = 0, padW = 0;
  Layout src = Layout::Nchw;  // of x and dx
  Layout dst = Layout::Nchw;  // of y and dy
  int64_t oh() const { return (h - 1) * strideH - 2 * padH + kh; }
  int64_t ow() const { return (w - 1) * strideW - 2 * padW + kw; }
  void check() const;
};

// x: n*c*h*w, w: c*k*kh*kw (PyTorch layout), b: k or null, y: n*k*oh*ow.
void convTranspose2dForward(const ConvTranspose2dShape& s, const float* x, const float* w, const float* b, float* y);
// Keeps: x and w. dx: n*c*h*w, dw: c*k*kh*kw, db: k (each may be null).
void convTranspose2dBackward(const ConvTranspose2dShape& s, const float* x, const float* w, const float* dy,
                             float* dx, float* dw, float* db);
// With the weights a parameter [c, k, kh, kw], as conv2dForward / conv2dBackward's Param forms.
void convTranspose2dForward(const ConvTranspose2dShape& s, const float* x, Param& w, float* y);
void convTranspose2dBackward(const ConvTranspose2dShape& s, const float* x, Param& w, const float* dy, float* dx,
                             bool wantDw);

// Batch normalisation over [n, c, h, w] with affine gamma/beta [c], as torch.nn.BatchNorm2d.
//
// Training mode (model.train()): normalises with the batch mean and the *biased* batch
// variance; writes them to saveMean / saveVar [c] (kept for the backward), and, when
// runningMean / runningVar are not null, updates them in place as torch does:
//   running = (1 - momentum) * running + momentum * batch_stat,
// with the *unbiased* variance (times m / (m - 1), m = n*h*w) for runningVar. m must be > 1.
void batchNormTrainForward(int64_t n, int64_t c, int64_t h, int64_t w, const float* x, const float* gamma,
                           const float* beta, float eps, double momentum, float* y, float* saveMean, float* saveVar,
                           float* runningMean, float* runningVar, Layout layout = Layout::Nchw, bool relu = false);
// Frozen statistics (model.eval(), or a BN kept frozen while training): normalises with the
// given mean/var [c]; nothing is updated.
void batchNormFrozenForward(int64_t n, int64_t c, int64_t h, int64_t w, const float* x, const float* gamma,
                            const float* beta, const float* mean, const float* var, float eps, float* y,
                            Layout layout = Layout::Nchw, bool relu = false);
// relu (either mode): y = max(bn(x), 0) in the same pass (oneDNN's fused ReLU). Its backward is
// reluBackward from y, then batchNormBackward.
// Backward of either mode. Training mode: mean/var are the saveMean/saveVar of the forward and
// the gradient flows through the batch statistics; frozen (frozenStats = true): mean/var are
// the frozen statistics, constants. Keeps: x, gamma, mean, var. dx: n*c*h*w, dgamma/dbeta: c
// (each may be null). `layout`: of x, y, dy and dx alike.
void batchNormBackward(int64_t n, int64_t c, int64_t h, int64_t w, const float* x, const float* gamma,
                       const float* mean, const float* var, float eps, bool frozenStats, const float* dy, float* dx,
                       float* dgamma, float* dbeta, Layout layout = Layout::Nchw);

// y = max(x, 0), count elements (y may be x: in place).
void reluForward(int64_t count, const float* x, float* y);
// Keeps: y (the output; x is not needed). dx = dy where y > 0, else 0 (dx may be dy).
void reluBackward(int64_t count, const float* y, const float* dy, float* dx);

// y = a + b (a residual connection), count elements (y may alias a or b); relu: y = max(a + b, 0)
// in the same pass (its backward is reluBackward from y, then addBackward).
void addForward(int64_t count, const float* a, const float* b, float* y, bool relu = false);
// Keeps nothing. da = dy, db = dy (either may be null).
void addBackward(int64_t count, const float* dy, float* da, float* db);
// dst += src, count elements: gradients of a tensor used twice (the shortcut of a block).
void accumulate(int64_t count, const float* src, float* dst);

// Channel concatenation of `parts` tensors [n, cs[i], h, w] into [n, sum cs, h, w].
void concatForward(int64_t n, int64_t parts, const int64_t* cs, int64_t h, int64_t w, const float* const* xs,
                   float* y);
// Keeps nothing. dxs[i]: n*cs[i]*h*w (each may be null).
void concatBackward(int64_t n, int64_t parts, const int64_t* cs, int64_t h, int64_t w, const float* dy,
                    float* const* dxs);

// Global average pooling [n, c, h, w] -> [n, c] (torch's adaptive_avg_pool2d(x, 1) flattened).
void globalAvgPoolForward(int64_t n, int64_t c, int64_t h, int64_t w, const float* x, float* y);
// Keeps nothing. dx[n, c, h, w] = dy[n, c] / (h * w).
void globalAvgPoolBackward(int64_t n, int64_t c, int64_t h, int64_t w, const float* dy, float* dx);

// y = x w^T + b as torch.nn.Linear(d, k): x [n, d], w [k, d], b [k] or null, y [n, k].
void linearForward(int64_t n, int64_t d, int64_t k, const float* x, const float* w, const float* b, float* y);
// Keeps: x and w. dx: n*d, dw: k*d, db: k (each may be null).
void linearBackward(int64_t n, int64_t d, int64_t k, const float* x, const float* w, const float* dy, float* dx,
                    float* dw, float* db);

}  // namespace anomalens::train

namespace anomalens::train {

// Max pooling as torch.nn.MaxPool2d(k, stride, padding) (implicit -inf padding; ResNet's stem
// uses 3, 2, 1). x [n, c, h, w] -> y [n, c, oh, ow], oh = floor((h + 2 pad - k) / stride) + 1.
void maxPool2dForward(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t stride, int64_t pad,
                      const float* x, float* y);
// Keeps: x. The gradient of each output goes to the first maximum of its window in row-major
// order (torch's CPU kernel's choice); dx is overwritten.
void maxPool2dBackward(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t stride, int64_t pad,
                       const float* x, const float* dy, float* dx);

}  // namespace anomalens::train
