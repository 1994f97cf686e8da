// The field catalog: for each entity type, the fields an export can contain, with their types.
// The server checks create requests against it; the worker's SQLite source has one table per
// entity (Entity::table) with one column per field, in catalog order.
//
// Thread safety: the catalog is immutable static data.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "exportjobs/v1/export_job.pb.h"
#include "exportjobs/v1/export_service.pb.h"

namespace exportd::catalog {

using FieldType = exportjobs::v1::FieldType;

struct Field {
  std::string_view name;
  FieldType type;
  // Exported when a create names no fields.
  bool is_default;
  std::string_view description;
};

struct Entity {
  exportjobs::v1::EntityType type;
  // The SQLite table, and the lowercase name in the seed JSON form ("accounts").
  std::string_view table;
  std::span<const Field> fields;
};

// Every entity, in EntityType order.
std::span<const Entity> Entities();

// The entity's catalog; nullptr for UNSPECIFIED or an unknown value.
const Entity* FindEntity(exportjobs::v1::EntityType type);

// The field named `name`; nullptr when the entity has none.
const Field* FindField(const Entity& entity, std::string_view name);

// The default fields, in catalog order.
std::vector<std::string> DefaultFields(const Entity& entity);

// "string", "integer", "number", "boolean", "timestamp".
std::string_view FieldTypeName(FieldType type);

}  // namespace exportd::catalog
