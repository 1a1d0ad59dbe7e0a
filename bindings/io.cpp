// readSafetensors(path) -> Promise<{ tensors: { name: { dtype, shape, data: Float32Array } }, metadata }>
#include "anomalens/io/safetensors.h"
#include "core/module.h"
#include "core/worker.h"

namespace anomalens::bindings {
namespace {

class ReadSafetensorsWorker : public PromiseWorker {
 public:
  ReadSafetensorsWorker(Napi::Env env, std::string path) : PromiseWorker(env, "readSafetensors"), path_(std::move(path)) {}

 protected:
  void compute() override {
    SafetensorsFile f = SafetensorsFile::read(path_);
    metadata_ = f.metadata();
    for (const std::string& name : f.names()) {
      const SafetensorsEntry& e = f.entry(name);
      Item item{name, e.dtypeName, e.shape, Tensor()};
      if (e.dtype == DType::F32 || e.dtype == DType::F16 || e.dtype == DType::BF16 || e.dtype == DType::F64)
        item.data = f.toFloat(name);
      items_.push_back(std::move(item));
    }
  }
  Napi::Value result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    Napi::Object tensors = Napi::Object::New(env);
    for (const Item& it : items_) {
      Napi::Object t = Napi::Object::New(env);
      t.Set("dtype", it.dtype);
      t.Set("shape", shapeToJs(env, it.shape));
      t.Set("data", it.data.empty() ? env.Null() : Napi::Value(toFloat32Array(env, it.data)));
      tensors.Set(it.name, t);
    }
    Napi::Object meta = Napi::Object::New(env);
    for (const auto& [k, v] : metadata_) meta.Set(k, v);
    out.Set("tensors", tensors);
    out.Set("metadata", meta);
    return out;
  }

 private:
  struct Item {
    std::string name, dtype;
    Shape shape;
    Tensor data;  // empty for dtypes that are not read as float
  };
  std::string path_;
  std::vector<Item> items_;
  std::map<std::string, std::string> metadata_;
};

Napi::Value ReadSafetensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "readSafetensors(path): path must be a string");
  return (new ReadSafetensorsWorker(env, info[0].As<Napi::String>().Utf8Value()))->start();
}

void init(Napi::Env env, Napi::Object exports) {
  exportFunctions(env, exports, {
    {"readSafetensors", ReadSafetensors}});
}

}  // namespace
ANOMALENS_REGISTER(safetensors, init);
}  // namespace anomalens::bindings
