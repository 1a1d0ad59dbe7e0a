// A network's parameter stores and their one busy state, shared between the network's binding
// (TrainResnet in train_models.cpp, TrainRd in train_rd.cpp) and the TrainParams views of it
// (new TrainParams(network, 'params' | 'buffers')). While a step, forward or backward of any of
// them is in flight, everything that reads or writes the tensors is refused (ERR_BUSY).
#pragma once
#include <napi.h>

#include <memory>

#include "anomalens/train/params.h"
#include "core/busy.h"

namespace anomalens::train {
class TrainableResnet;
}

namespace anomalens::bindings {

struct TrainShared {
  std::shared_ptr<train::TrainableResnet> net;  // a TrainResnet's network, else null
  std::shared_ptr<void> owner;                  // another network owning the stores (TrainRd's student)
  std::shared_ptr<train::ParamStore> params, buffers;
  BusyState busy;  // every operation is exclusive
};

// The stores of a TrainRd of this environment (train_rd.cpp); null when `v` is not one (never
// an object of another class: Unwrap would reinterpret it).
std::shared_ptr<TrainShared> trainRdShared(Napi::Value v);

}  // namespace anomalens::bindings
