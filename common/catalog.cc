#include "common/catalog.h"

#include <array>

namespace exportd::catalog {
namespace {

using exportjobs::v1::EntityType;
constexpr FieldType kString = exportjobs::v1::FIELD_TYPE_STRING;
constexpr FieldType kInteger = exportjobs::v1::FIELD_TYPE_INTEGER;
constexpr FieldType kNumber = exportjobs::v1::FIELD_TYPE_NUMBER;
constexpr FieldType kBoolean = exportjobs::v1::FIELD_TYPE_BOOLEAN;
constexpr FieldType kTimestamp = exportjobs::v1::FIELD_TYPE_TIMESTAMP;

constexpr Field kAccounts[] = {
    {"id", kInteger, true, "Account id"},
    {"name", kString, true, "Company name"},
    {"domain", kString, true, "Primary web domain"},
    {"industry", kString, true, "Industry"},
    {"employee_count", kInteger, true, "Number of employees"},
    {"annual_revenue", kNumber, false, "Annual revenue in USD"},
    {"country", kString, true, "Headquarters country (ISO 3166-1 alpha-2)"},
    {"region", kString, false, "Sales region (AMER, EMEA, APAC)"},
    {"intent_score", kNumber, false, "Buying intent, 0-100"},
    {"engagement_score", kNumber, false, "Engagement, 0-100"},
    {"is_customer", kBoolean, false, "Whether the account is a customer"},
    {"created_at", kTimestamp, false, "When the account was created"},
};

constexpr Field kPeople[] = {
    {"id", kInteger, true, "Person id"},
    {"account_id", kInteger, true, "The person's account"},
    {"first_name", kString, true, "First name"},
    {"last_name", kString, true, "Last name"},
    {"email", kString, true, "Work email"},
    {"title", kString, true, "Job title"},
    {"seniority", kString, false, "Seniority (C-Level, VP, Director, Manager, Individual)"},
    {"department", kString, false, "Department"},
    {"country", kString, false, "Country (ISO 3166-1 alpha-2)"},
    {"engagement_score", kNumber, false, "Engagement, 0-100"},
    {"email_opt_out", kBoolean, false, "Whether the person opted out of email"},
    {"created_at", kTimestamp, false, "When the person was created"},
};

constexpr Field kOpportunities[] = {
    {"id", kInteger, true, "Opportunity id"},
    {"account_id", kInteger, true, "The opportunity's account"},
    {"name", kString, true, "Opportunity name"},
    {"stage", kString, true, "Sales stage"},
    {"amount", kNumber, true, "Amount in USD"},
    {"probability", kInteger, false, "Win probability in percent"},
    {"close_date", kTimestamp, true, "Expected or actual close date"},
    {"is_closed", kBoolean, false, "Whether the opportunity is closed"},
    {"is_won", kBoolean, false, "Whether the opportunity was won"},
    {"created_at", kTimestamp, false, "When the opportunity was created"},
};

constexpr Field kActivities[] = {
    {"id", kInteger, true, "Activity id"},
    {"account_id", kInteger, true, "The activity's account"},
    {"person_id", kInteger, true, "The person involved"},
    {"type", kString, true, "email, call, meeting, web_visit or form_fill"},
    {"subject", kString, false, "Subject or page"},
    {"duration_seconds", kInteger, false, "Duration in seconds"},
    {"occurred_at", kTimestamp, true, "When the activity happened"},
};

constexpr Field kCampaigns[] = {
    {"id", kInteger, true, "Campaign id"},
    {"name", kString, true, "Campaign name"},
    {"channel", kString, true, "Channel (display, email, social, search, events)"},
    {"status", kString, true, "planned, active or completed"},
    {"budget", kNumber, true, "Budget in USD"},
    {"impressions", kInteger, false, "Impressions"},
    {"clicks", kInteger, false, "Clicks"},
    {"conversions", kInteger, false, "Conversions"},
    {"start_date", kTimestamp, false, "Start"},
    {"end_date", kTimestamp, false, "End"},
};

constexpr Field kBuyingGroups[] = {
    {"id", kInteger, true, "Buying group id"},
    {"account_id", kInteger, true, "The buying group's account"},
    {"name", kString, true, "Buying group name"},
    {"stage", kString, true, "Journey stage"},
    {"member_count", kInteger, true, "Number of members"},
    {"engagement_score", kNumber, false, "Engagement, 0-100"},
    {"created_at", kTimestamp, false, "When the buying group was created"},
};

constexpr std::array<Entity, 6> kEntities = {{
    {exportjobs::v1::ENTITY_TYPE_ACCOUNTS, "accounts", kAccounts},
    {exportjobs::v1::ENTITY_TYPE_PEOPLE, "people", kPeople},
    {exportjobs::v1::ENTITY_TYPE_OPPORTUNITIES, "opportunities", kOpportunities},
    {exportjobs::v1::ENTITY_TYPE_ACTIVITIES, "activities", kActivities},
    {exportjobs::v1::ENTITY_TYPE_CAMPAIGNS, "campaigns", kCampaigns},
    {exportjobs::v1::ENTITY_TYPE_BUYING_GROUPS, "buying_groups", kBuyingGroups},
}};

}  // namespace

std::span<const Entity> Entities() { return kEntities; }

const Entity* FindEntity(EntityType type) {
  for (const Entity& entity : kEntities) {
    if (entity.type == type) return &entity;
  }
  return nullptr;
}

const Field* FindField(const Entity& entity, std::string_view name) {
  for (const Field& field : entity.fields) {
    if (field.name == name) return &field;
  }
  return nullptr;
}

std::vector<std::string> DefaultFields(const Entity& entity) {
  std::vector<std::string> names;
  for (const Field& field : entity.fields) {
    if (field.is_default) names.emplace_back(field.name);
  }
  return names;
}

std::string_view FieldTypeName(FieldType type) {
  switch (type) {
    case kString:
      return "string";
    case kInteger:
      return "integer";
    case kNumber:
      return "number";
    case kBoolean:
      return "boolean";
    case kTimestamp:
      return "timestamp";
    default:
      return "unspecified";
  }
}

}  // namespace exportd::catalog
