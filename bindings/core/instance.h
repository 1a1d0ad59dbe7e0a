// Per-environment instance data. An addon may be loaded by several Node environments at once
// (the main thread and worker_threads); a JS constructor or any other JS value belongs to one
// of them and must never be kept in a static. Each environment gets its own AddonData
// (Napi::Env::SetInstanceData, freed when the environment shuts down).
#pragma once
#include <napi.h>

namespace anomalens::bindings {

struct AddonData {
  Napi::FunctionReference backbone;     // NativeBackbone (bindings/nn.cpp)
  Napi::FunctionReference memoryBank;   // MemoryBank (bindings/knn.cpp)
  Napi::FunctionReference faissIndex;   // FaissIndex (bindings/knn.cpp)
  Napi::FunctionReference trainResnet;  // TrainResnet (bindings/train_models.cpp: TrainParams views check it)
  Napi::FunctionReference trainRd;      // TrainRd (bindings/train_rd.cpp: the same)
};

// This environment's data, created by the module entry before any family registers.
AddonData& addonData(Napi::Env env);

}  // namespace anomalens::bindings
