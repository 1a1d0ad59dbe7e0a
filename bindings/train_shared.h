// A parameter store pair and its busy state, shared between a network binding (TrainResnet,
// TrainRd) and the TrainParams views of it. A network other than TrainResnet hands its Shared
// to `new TrainParams(handle, 'params' | 'buffers')` as the External made by sharedHandle().
#pragma once
#include <napi.h>

#include <memory>

#include "anomalens/train/params.h"

namespace anomalens::train {
class TrainableResnet;
}

namespace anomalens::bindings {

struct TrainShared {
  std::shared_ptr<train::TrainableResnet> net;  // the TrainResnet's network, else null
  std::shared_ptr<void> owner;                  // another network owning the stores
  std::shared_ptr<train::ParamStore> params, buffers;
  bool busy = false;
};

// An External carrying `shared` (tagged, so that an unrelated External is refused).
Napi::Value sharedHandle(Napi::Env env, const std::shared_ptr<TrainShared>& shared);
// The Shared of a sharedHandle() External; null when `v` is not one.
std::shared_ptr<TrainShared> sharedFromHandle(Napi::Value v);

}  // namespace anomalens::bindings
