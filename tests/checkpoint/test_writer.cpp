#include "sla/checkpoint/pt_reader.h"
#include "sla/checkpoint/pt_writer.h"
#include "sla/checkpoint/zip_reader.h"

#include "pt_builder.h"

#include <catch.hpp>

#include <cmath>
#include <cstring>

using namespace sla::checkpoint;
using pt::Value;

namespace {

std::shared_ptr<pt::Storage> storage_of(const std::vector<float>& values) {
  auto s = std::make_shared<pt::Storage>();
  s->dtype = pt::DType::Float32;
  s->numel = values.size();
  s->bytes = reinterpret_cast<const uint8_t*>(values.data());
  return s;
}

std::shared_ptr<pt::Tensor> tensor(std::shared_ptr<pt::Storage> s, std::vector<int64_t> shape, std::vector<int64_t> strides, int64_t offset = 0) {
  auto t = std::make_shared<pt::Tensor>();
  t->dtype = s->dtype;
  t->storage = std::move(s);
  t->shape = std::move(shape);
  t->strides = std::move(strides);
  t->storage_offset = offset;
  return t;
}

}  // namespace

TEST_CASE("writer -> reader keeps every value, order and tensor geometry") {
  std::vector<float> data(12);
  for (size_t i = 0; i < data.size(); ++i) data[i] = float(i) - 3.5f;
  auto shared = storage_of(data);
  std::vector<float> other_data = {1, NAN, INFINITY};
  auto other = storage_of(other_data);

  auto root = Value::dict();
  root->set("matrix", Value::from_tensor(tensor(shared, {3, 4}, {4, 1})));
  root->set("transposed", Value::from_tensor(tensor(shared, {4, 3}, {1, 4})));
  root->set("view", Value::from_tensor(tensor(shared, {2, 2}, {4, 2}, 5)));
  root->set("other", Value::from_tensor(tensor(other, {3}, {1})));
  root->set("scalar", Value::from_tensor(tensor(other, {}, {}, 2)));
  root->set("ints", Value::list({Value::from_int(0), Value::from_int(255), Value::from_int(256), Value::from_int(65536), Value::from_int(-1),
                                 Value::from_int(int64_t(1) << 40), Value::from_int(INT64_MIN), Value::from_int(INT64_MAX)}));
  root->set("floats", Value::tuple({Value::from_double(0.2), Value::from_double(-0.0), Value::from_double(1e300)}));
  root->set("misc", Value::list({Value::none(), Value::from_bool(true), Value::from_bool(false), Value::from_string("caf\xc3\xa9"), Value::tuple()}));
  auto ordered = Value::dict();
  ordered->ordered_dict = true;
  ordered->set("b", Value::from_int(1));
  ordered->set("a", Value::from_int(2));
  root->set("ordered", ordered);
  auto many = Value::dict();  // more than one SETITEMS batch
  for (int i = 0; i < 2500; ++i) many->set("k" + std::to_string(i), Value::from_int(i));
  root->set("many", many);

  std::vector<uint8_t> bytes = pt::encode_pt(*root, "round_trip");
  pt::PtFile file = pt::read_pt_buffer(bytes.data(), bytes.size(), "round_trip.pt");
  CHECK(file.prefix == "round_trip");
  CHECK(file.version == 3);
  const Value& r = *file.root;
  REQUIRE(r.entries.size() == root->entries.size());
  for (size_t i = 0; i < r.entries.size(); ++i) CHECK(r.entries[i].first->text == root->entries[i].first->text);

  const pt::Tensor& m = *r.get("matrix")->tensor;
  const pt::Tensor& t = *r.get("transposed")->tensor;
  const pt::Tensor& v = *r.get("view")->tensor;
  CHECK(m.storage == t.storage);
  CHECK(m.storage == v.storage);
  CHECK(m.storage != r.get("other")->tensor->storage);
  CHECK(m.storage->key == "0");
  CHECK(r.get("other")->tensor->storage->key == "1");
  CHECK(t.strides == std::vector<int64_t>{1, 4});
  CHECK(v.storage_offset == 5);
  CHECK(v.element(3) == data[5 + 4 + 2]);
  CHECK(t.element(1) == data[4]);
  CHECK(std::isnan(r.get("other")->tensor->element(1)));
  CHECK(r.get("scalar")->tensor->shape.empty());
  CHECK(r.get("scalar")->tensor->element(0) == INFINITY);

  const auto& ints = r.get("ints")->items;
  std::vector<int64_t> expected = {0, 255, 256, 65536, -1, int64_t(1) << 40, INT64_MIN, INT64_MAX};
  REQUIRE(ints.size() == expected.size());
  for (size_t i = 0; i < ints.size(); ++i) CHECK(ints[i]->integer == expected[i]);
  CHECK(r.get("floats")->kind == Value::Kind::Tuple);
  CHECK(r.get("floats")->items[0]->real == 0.2);
  CHECK(std::signbit(r.get("floats")->items[1]->real));
  CHECK(r.get("misc")->items[0]->kind == Value::Kind::None);
  CHECK(r.get("misc")->items[3]->text == "caf\xc3\xa9");
  CHECK(r.get("ordered")->ordered_dict);
  CHECK(r.get("ordered")->entries[0].first->text == "b");
  CHECK(r.get("many")->entries.size() == 2500);
  CHECK(r.get("many")->entries[2499].second->integer == 2499);
}

TEST_CASE("writer lays records out in torch.save's order, 64-byte aligned") {
  std::vector<float> a = {1, 2}, b = {3};
  auto root = Value::dict();
  root->set("b", Value::from_tensor(tensor(storage_of(b), {1}, {1})));
  root->set("a", Value::from_tensor(tensor(storage_of(a), {2}, {1})));
  std::vector<uint8_t> bytes = pt::encode_pt(*root, "sla_attention");
  pt::ZipOptions canonical;
  canonical.canonical = true;  // misalignment would be E_ALIGN
  pt::ZipArchive zip = pt::read_zip(bytes.data(), bytes.size(), "x", pt::Limits{}, canonical);
  std::vector<std::string> names;
  for (const auto& e : zip.entries) names.push_back(e.record);
  CHECK(names == std::vector<std::string>{"data.pkl", ".format_version", ".storage_alignment", "byteorder", "data/0", "data/1", "version",
                                          ".data/serialization_id"});
  CHECK(std::string(reinterpret_cast<const char*>(zip.find("version")->data), 2) == "3\n");
  CHECK(zip.find("data/0")->size == 4);  // "b" was pickled first
  const auto* id = zip.find(".data/serialization_id");
  CHECK(id->size == 40);
}

TEST_CASE("writer encodes ints as CPython does (LONG1 of minimal length)") {
  auto root = Value::from_int(int64_t(1) << 40);
  std::vector<uint8_t> bytes = pt::encode_pt(*root, "x");
  pt::ZipArchive zip = pt::read_zip(bytes.data(), bytes.size(), "x", pt::Limits{});
  const auto* pkl = zip.find("data.pkl");
  std::vector<uint8_t> pickle(pkl->data, pkl->data + pkl->size);
  CHECK(pickle == std::vector<uint8_t>{0x80, 2, 0x8a, 6, 0, 0, 0, 0, 0, 1, '.'});
}
