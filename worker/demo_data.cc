#include "worker/demo_data.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/catalog.h"
#include "common/status_macros.h"
#include "common/str_cat.h"
#include "worker/sqlite_source.h"

namespace exportd {
namespace {

constexpr int64_t kDay = 24 * 60 * 60;
constexpr int64_t kYear = 365 * kDay;
constexpr int64_t kMaxAccounts = 10'000'000;

// ---------------------------------------------------------------------------------------------
// Randomness: xoshiro256** seeded by SplitMix64, with distributions defined here so that every
// standard library gives the same sequence.

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

class Rng {
 public:
  // One independent stream per (seed, stream), so that the size of one table never changes the
  // contents of another.
  Rng(uint64_t seed, uint64_t stream) {
    uint64_t state = seed ^ (stream * 0xd1b54a32d192ed03ULL);
    for (uint64_t& word : s_) word = SplitMix64(state);
  }

  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, n); n > 0. Rejects the few values that would bias the remainder.
  uint64_t Below(uint64_t n) {
    const uint64_t threshold = -n % n;  // 2^64 mod n
    uint64_t x = Next();
    while (x < threshold) x = Next();
    return x % n;
  }

  // Uniform in [low, high].
  int64_t Between(int64_t low, int64_t high) {
    return low + static_cast<int64_t>(Below(static_cast<uint64_t>(high - low) + 1));
  }

  // Uniform in [0, 1).
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

  bool Chance(double probability) { return Unit() < probability; }

  template <typename T, size_t N>
  const T& Pick(const T (&items)[N]) {
    return items[Below(N)];
  }

  // An index drawn with probability proportional to items[i].weight.
  template <typename T, size_t N>
  size_t Weighted(const T (&items)[N]) {
    double total = 0;
    for (const T& item : items) total += item.weight;
    double target = Unit() * total;
    for (size_t i = 0; i < N; ++i) {
      target -= items[i].weight;
      if (target < 0) return i;
    }
    return N - 1;
  }

  // A score 0.0-100.0 with one decimal.
  double Score() { return static_cast<double>(Between(0, 1000)) / 10.0; }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

  uint64_t s_[4];
};

// "YYYY-MM-DDTHH:MM:SSZ" for seconds since the epoch (proleptic Gregorian, UTC).
std::string FormatTimestamp(int64_t unix_seconds) {
  int64_t days = unix_seconds / kDay;
  int64_t seconds = unix_seconds % kDay;
  if (seconds < 0) {
    seconds += kDay;
    --days;
  }
  // Howard Hinnant's civil_from_days.
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  // Digits by hand: snprintf was a tenth of the generator's time.
  std::string text = "0000-00-00T00:00:00Z";
  const auto put = [&text](size_t end, int64_t value, int digits) {
    for (int i = 1; i <= digits; ++i, value /= 10)
      text[end - i] = static_cast<char>('0' + value % 10);
  };
  put(4, year, 4);
  put(7, month, 2);
  put(10, day, 2);
  put(13, seconds / 3600, 2);
  put(16, seconds / 60 % 60, 2);
  put(19, seconds % 60, 2);
  return text;
}

int64_t Midnight(int64_t unix_seconds) {
  return unix_seconds - ((unix_seconds % kDay) + kDay) % kDay;
}

// Lowercase ASCII letters and digits of `text`, with common accented letters folded.
std::string Slug(std::string_view text) {
  static constexpr std::pair<std::string_view, char> kFolds[] = {
      {"é", 'e'}, {"è", 'e'}, {"ë", 'e'}, {"ø", 'o'}, {"ö", 'o'}, {"ó", 'o'},
      {"ü", 'u'}, {"ç", 'c'}, {"á", 'a'}, {"å", 'a'}, {"ä", 'a'}, {"í", 'i'},
      {"ñ", 'n'}, {"ß", 's'}, {"Ø", 'o'}, {"Ö", 'o'}, {"Ü", 'u'}, {"Å", 'a'},
  };
  std::string slug;
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) {
      slug += absl::ascii_tolower(static_cast<unsigned char>(c));
      ++i;
      continue;
    }
    bool folded = false;
    for (const auto& [from, to] : kFolds) {
      if (text.substr(i, from.size()) == from) {
        slug += to;
        i += from.size();
        folded = true;
        break;
      }
    }
    if (!folded) ++i;
  }
  return slug;
}

// ---------------------------------------------------------------------------------------------
// Vocabulary.

struct Country {
  std::string_view code;
  std::string_view region;
  double weight;
  std::string_view tld;
  std::string_view suffixes[2];
};

constexpr Country kCountries[] = {
    {"US", "AMER", 30, ".com", {"Inc.", "LLC"}},
    {"CA", "AMER", 5, ".ca", {"Inc.", "Ltd."}},
    {"BR", "AMER", 3, ".com.br", {"Ltda.", "S.A."}},
    {"MX", "AMER", 2, ".com.mx", {"S.A. de C.V.", "S.A. de C.V."}},
    {"GB", "EMEA", 9, ".co.uk", {"Ltd", "plc"}},
    {"DE", "EMEA", 8, ".de", {"GmbH", "AG"}},
    {"FR", "EMEA", 5, ".fr", {"SAS", "SA"}},
    {"NL", "EMEA", 3, ".nl", {"B.V.", "B.V."}},
    {"SE", "EMEA", 2, ".se", {"AB", "AB"}},
    {"ES", "EMEA", 2, ".es", {"S.L.", "S.A."}},
    {"IT", "EMEA", 2, ".it", {"S.p.A.", "S.r.l."}},
    {"IE", "EMEA", 2, ".ie", {"Ltd", "DAC"}},
    {"CH", "EMEA", 2, ".ch", {"AG", "SA"}},
    {"PL", "EMEA", 1, ".pl", {"sp. z o.o.", "S.A."}},
    {"JP", "APAC", 5, ".co.jp", {"K.K.", "G.K."}},
    {"AU", "APAC", 4, ".com.au", {"Pty Ltd", "Pty Ltd"}},
    {"IN", "APAC", 4, ".in", {"Pvt. Ltd.", "Ltd."}},
    {"SG", "APAC", 3, ".sg", {"Pte. Ltd.", "Pte. Ltd."}},
    {"KR", "APAC", 2, ".co.kr", {"Co., Ltd.", "Inc."}},
    {"NZ", "APAC", 1, ".co.nz", {"Limited", "Limited"}},
};

constexpr std::string_view kNameFirst[] = {
    "Blue",       "North",   "Summit",    "Apex",     "Bright",    "Cedar",     "Quantum",
    "Nimbus",     "Iron",    "Silver",    "Harbor",   "Evergreen", "Pioneer",   "Vertex",
    "Atlas",      "Beacon",  "Crimson",   "Granite",  "Horizon",   "Lumen",     "Meridian",
    "Nova",       "Orbit",   "Polar",     "Redwood",  "Sierra",    "Stellar",   "Tidal",
    "Union",      "Vantage", "Willow",    "Zenith",   "Alder",     "Bluebird",  "Cobalt",
    "Delta",      "Ember",   "Falcon",    "Glacier",  "Hudson",    "Juniper",   "Keystone",
    "Lighthouse", "Maple",   "Northstar", "Oakridge", "Pinnacle",  "Riverbend",
};

constexpr std::string_view kNameSecond[] = {
    "Logic",       "Works",         "Systems",   "Labs",      "Dynamics",  "Analytics",
    "Health",      "Capital",       "Networks",  "Robotics",  "Software",  "Foods",
    "Logistics",   "Energy",        "Media",     "Partners",  "Solutions", "Technologies",
    "Bio",         "Financial",     "Retail",    "Learning",  "Security",  "Cloud",
    "Data",        "Manufacturing", "Telecom",   "Insurance", "Motors",    "Pharma",
    "Consulting",  "Ventures",      "Materials", "Aerospace", "Brands",    "Studios",
    "Hospitality", "Devices",       "Mobility",  "Holdings",
};

constexpr std::string_view kIndustries[] = {
    "Software",
    "Financial Services",
    "Healthcare",
    "Manufacturing",
    "Retail",
    "Education",
    "Telecommunications",
    "Media & Entertainment",
    "Energy",
    "Transportation & Logistics",
    "Real Estate",
    "Professional Services",
    "Biotechnology",
    "Government",
    "Hospitality",
};

constexpr std::string_view kFirstNames[] = {
    "James",   "Mary",   "Wei",     "Priya",   "Mohammed",  "Sofia",   "Lukas",    "Emma",
    "Hiroshi", "Yuki",   "Carlos",  "Ana",     "Olivia",    "Liam",    "Noah",     "Ava",
    "Mateo",   "Chloé",  "Zoë",     "José",    "Søren",     "Björn",   "François", "Ingrid",
    "Aisha",   "Omar",   "Fatima",  "Raj",     "Ananya",    "Min-jun", "Seo-yeon", "Thomas",
    "Sarah",   "David",  "Laura",   "Michael", "Jennifer",  "Daniel",  "Elena",    "Marco",
    "Giulia",  "Pierre", "Camille", "Jan",     "Katarzyna", "Liam",    "Grace",    "Ethan",
    "Hannah",  "Kenji",  "Mei",     "Arjun",   "Chen",      "Isabel",  "Pedro",    "Lucía",
    "Nora",    "Oscar",  "Ruth",    "Samuel",
};

constexpr std::string_view kLastNames[] = {
    "Smith",     "Johnson",   "Williams",  "Brown",    "Garcia",      "Miller",       "Davis",
    "Müller",    "Schmidt",   "Schneider", "Fischer",  "Dubois",      "Martin",       "Bernard",
    "Rossi",     "Russo",     "Nakamura",  "Tanaka",   "Suzuki",      "Kim",          "Lee",
    "Park",      "Singh",     "Patel",     "Sharma",   "Nguyen",      "Chen",         "Wang",
    "Li",        "O'Brien",   "O'Connor",  "D'Angelo", "Smith-Jones", "van der Berg", "de la Cruz",
    "Andersson", "Johansson", "Nilsson",   "Kowalski", "Nowak",       "Silva",        "Santos",
    "Pereira",   "González",  "Hernández", "López",    "Murphy",      "Kelly",        "Walsh",
    "Taylor",    "Wilson",    "Anderson",  "Thomas",   "Moore",       "Jackson",      "White",
    "Harris",    "Clark",     "Lewis",     "Young",
};

struct Weighted {
  std::string_view name;
  double weight;
};

constexpr Weighted kSeniorities[] = {
    {"C-Level", 5}, {"VP", 10}, {"Director", 20}, {"Manager", 30}, {"Individual", 35},
};

struct Department {
  std::string_view name;
  std::string_view chief;
  std::string_view individuals[3];
};

constexpr Department kDepartments[] = {
    {"Marketing",
     "Chief Marketing Officer",
     {"Marketing Specialist", "Demand Generation Manager", "Content Strategist"}},
    {"Sales",
     "Chief Revenue Officer",
     {"Account Executive", "Sales Development Rep", "Sales Engineer"}},
    {"Engineering",
     "Chief Technology Officer",
     {"Software Engineer", "Site Reliability Engineer", "Data Engineer"}},
    {"IT",
     "Chief Information Officer",
     {"Systems Administrator", "IT Analyst", "Security Analyst"}},
    {"Finance", "Chief Financial Officer", {"Financial Analyst", "Accountant", "Controller"}},
    {"Operations",
     "Chief Operating Officer",
     {"Operations Analyst", "Project Manager", "Procurement Specialist"}},
    {"Human Resources",
     "Chief People Officer",
     {"Recruiter", "HR Business Partner", "Payroll Specialist"}},
    {"Legal", "General Counsel", {"Paralegal", "Corporate Counsel", "Compliance Analyst"}},
    {"Product", "Chief Product Officer", {"Product Manager", "Product Designer", "UX Researcher"}},
    {"Customer Success",
     "Chief Customer Officer",
     {"Customer Success Manager", "Support Engineer", "Onboarding Specialist"}},
};

struct Stage {
  std::string_view name;
  double weight;
  int64_t probability;
};

constexpr Stage kOpportunityStages[] = {
    {"Prospecting", 15, 10}, {"Qualification", 15, 20}, {"Needs Analysis", 12, 40},
    {"Proposal", 12, 60},    {"Negotiation", 8, 80},    {"Closed Won", 20, 100},
    {"Closed Lost", 18, 0},
};

constexpr std::string_view kOpportunityKinds[] = {
    "New Business",
    "Expansion",
    "Renewal",
    "Upsell: Analytics Add-on",
    "Platform Migration",
    "Pilot, Phase 1",
    "Multi-year Renewal (3 yrs)",
    "Cross-sell",
};

constexpr Weighted kActivityTypes[] = {
    {"email", 35}, {"web_visit", 25}, {"call", 18}, {"meeting", 12}, {"form_fill", 10},
};

// Topics include '%' and '_' so that contains / starts_with filters meet wildcard characters.
constexpr std::string_view kTopics[] = {
    "data integration",     "analytics",    "SSO & SCIM",      "the 2026 renewal",
    "API limits",           "ABM strategy", "intent data",     "20% discount",
    "user_roles migration", "onboarding",   "security review", "pricing",
};

constexpr std::string_view kPages[] = {
    "/pricing",
    "/product/analytics",
    "/product/data-platform",
    "/customers",
    "/blog/what-is-abm",
    "/docs/getting-started",
    "/pricing?plan=enterprise&seats=100",
    "/blog/intent_data_101",
    "/compare/competitor-x",
    "/careers",
};

constexpr std::string_view kAssets[] = {
    "2026 State of B2B Marketing Report", "ABM Playbook",        "ROI Calculator",
    "Buyer's Guide to Intent Data",       "Security Whitepaper",
};

constexpr std::string_view kCampaignThemes[] = {
    "Product Launch",       "Brand Awareness", "Webinar: \"Data, AI & You\"", "Customer Advocacy",
    "Retargeting",          "Trade Show",      "Partner Co-Marketing",        "Free Trial Push",
    "ABM, Tier 1 Accounts", "Holiday Promo",   "Competitive Takeout",         "Nurture Track",
};

struct Channel {
  std::string_view name;
  std::string_view label;
  int64_t min_impressions;
  int64_t max_impressions;
};

constexpr Channel kChannels[] = {
    {"display", "Display", 50'000, 5'000'000}, {"email", "Email", 5'000, 200'000},
    {"social", "Social", 20'000, 2'000'000},   {"search", "Search", 10'000, 1'000'000},
    {"events", "Events", 200, 20'000},
};

constexpr std::string_view kSolutions[] = {
    "Marketing Automation", "Data Platform", "Security Suite",
    "Sales Engagement",     "Analytics",     "Customer Data Platform",
    "Collaboration Tools",
};

constexpr Weighted kBuyingStages[] = {
    {"Awareness", 25},  {"Interest", 22}, {"Consideration", 20},
    {"Evaluation", 15}, {"Decision", 10}, {"Purchase", 8},
};

// ---------------------------------------------------------------------------------------------
// Writing.

// One column value: NULL, text, integer or real.
using DbValue = std::variant<std::monostate, std::string_view, int64_t, double>;

absl::Status SqliteError(sqlite3* db, std::string_view what) {
  return absl::UnavailableError(Cat("demo data: ", what, ": ", sqlite3_errmsg(db)));
}

absl::Status Exec(sqlite3* db, const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    const std::string message = error == nullptr ? "unknown error" : error;
    sqlite3_free(error);
    return absl::UnavailableError(Cat("demo data: ", message));
  }
  return absl::OkStatus();
}

// A prepared INSERT for one entity's table.
class Inserter {
 public:
  static absl::StatusOr<Inserter> Prepare(sqlite3* db, const catalog::Entity& entity) {
    std::string sql = Cat("INSERT INTO \"", entity.table, "\" VALUES (");
    for (size_t i = 0; i < entity.fields.size(); ++i) {
      Append(&sql, i == 0 ? "" : ", ", "?", i + 1);
    }
    sql += ")";
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) != SQLITE_OK) {
      return SqliteError(db, Cat("preparing the insert into ", entity.table));
    }
    return Inserter(db, statement, entity.fields.size());
  }

  // Inserts one row; `values` in catalog order.
  [[nodiscard]] absl::Status Insert(std::initializer_list<DbValue> values) {
    if (values.size() != columns_) {
      return absl::InternalError(
          Cat("demo data: ", values.size(), " values for ", columns_, " columns"));
    }
    int index = 1;
    for (const DbValue& value : values) {
      if (const auto* text = std::get_if<std::string_view>(&value)) {
        sqlite3_bind_text64(statement_.get(), index, text->data(), text->size(), SQLITE_STATIC,
                            SQLITE_UTF8);
      } else if (const auto* integer = std::get_if<int64_t>(&value)) {
        sqlite3_bind_int64(statement_.get(), index, *integer);
      } else if (const auto* number = std::get_if<double>(&value)) {
        sqlite3_bind_double(statement_.get(), index, *number);
      } else {
        sqlite3_bind_null(statement_.get(), index);
      }
      ++index;
    }
    const int rc = sqlite3_step(statement_.get());
    sqlite3_reset(statement_.get());
    if (rc != SQLITE_DONE) return SqliteError(db_, "insert");
    return absl::OkStatus();
  }

 private:
  struct Finalizer {
    void operator()(sqlite3_stmt* statement) const { sqlite3_finalize(statement); }
  };

  Inserter(sqlite3* db, sqlite3_stmt* statement, size_t columns)
      : db_(db), statement_(statement), columns_(columns) {}

  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, Finalizer> statement_;
  size_t columns_;
};

DbValue Text(const std::string& text) { return std::string_view(text); }
DbValue Int(int64_t value) { return value; }
DbValue Bool(bool value) { return int64_t{value ? 1 : 0}; }
template <typename T>
DbValue OrNull(bool is_null, T value) {
  if (is_null) return std::monostate();
  return DbValue(value);
}

// What later tables need to know about an account.
struct AccountInfo {
  std::string name;
  std::string domain;
  int country;  // Index into kCountries; -1 when NULL.
  int64_t created_at;
  double weight;      // Relative number of people and activities.
  double max_amount;  // The largest opportunity amount that fits the company's size.
};

// Spreads `total` items over accounts with probability proportional to `weights`; returns the
// count per account.
std::vector<int32_t> Distribute(int64_t total, const std::vector<double>& weights, Rng& rng) {
  std::vector<int32_t> counts(weights.size(), 0);
  if (weights.empty() || total <= 0) return counts;
  std::vector<double> cumulative(weights.size());
  double sum = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    sum += weights[i];
    cumulative[i] = sum;
  }
  for (int64_t n = 0; n < total; ++n) {
    const double target = rng.Unit() * sum;
    size_t index =
        std::upper_bound(cumulative.begin(), cumulative.end(), target) - cumulative.begin();
    if (index >= counts.size()) index = counts.size() - 1;
    ++counts[index];
  }
  return counts;
}

const catalog::Entity& EntityOf(exportjobs::v1::EntityType type) {
  return *catalog::FindEntity(type);
}

class Generator {
 public:
  Generator(sqlite3* db, const DemoDataOptions& options)
      : db_(db), options_(options), sizes_(DemoSizes(options)), now_(options.now_unix_seconds) {}

  [[nodiscard]] absl::Status Run() {
    for (const catalog::Entity& entity : catalog::Entities()) {
      EXPORTD_RETURN_IF_ERROR(Exec(db_, SqliteSchema(entity)));
    }
    EXPORTD_RETURN_IF_ERROR(Accounts());
    EXPORTD_RETURN_IF_ERROR(People());
    EXPORTD_RETURN_IF_ERROR(Opportunities());
    EXPORTD_RETURN_IF_ERROR(Activities());
    EXPORTD_RETURN_IF_ERROR(Campaigns());
    return BuyingGroups();
  }

 private:
  enum Stream : uint64_t {
    kAccountStream = 1,
    kPeopleStream,
    kOpportunityStream,
    kActivityStream,
    kCampaignStream,
    kBuyingGroupStream,
  };

  Rng StreamRng(Stream stream) const { return Rng(options_.seed, stream); }

  [[nodiscard]] absl::Status Accounts() {
    EXPORTD_ASSIGN_OR_RETURN(
        Inserter insert, Inserter::Prepare(db_, EntityOf(exportjobs::v1::ENTITY_TYPE_ACCOUNTS)));
    Rng rng = StreamRng(kAccountStream);
    absl::flat_hash_map<std::string, int> domains;
    accounts_.reserve(sizes_.accounts);
    for (int64_t id = 1; id <= sizes_.accounts; ++id) {
      const int country_index = static_cast<int>(rng.Weighted(kCountries));
      const Country& country = kCountries[country_index];
      const std::string_view first = rng.Pick(kNameFirst);
      const std::string_view second = rng.Pick(kNameSecond);
      const std::string_view suffix = country.suffixes[rng.Below(2)];

      std::string base;
      std::string name;
      const double shape = rng.Unit();
      if (shape < 0.03) {
        // A firm named after its founders, with apostrophes ("O'Brien & Kelly LLP").
        const std::string_view a = rng.Pick(kLastNames);
        const std::string_view b = rng.Pick(kLastNames);
        base = Cat(a, " ", b);
        name = Cat(a, " & ", b, " ", suffix);
      } else {
        base = Cat(first, " ", second);
        name = base;
        if (shape < 0.035) {
          // A nickname in double quotes.
          name = Cat(first, " \"", second.substr(0, 1), "\" ", second);
        }
        if (country.code == "US" && suffix == "Inc." && rng.Chance(0.4)) {
          Append(&name, ", ", suffix);  // "Blue Logic, Inc."
        } else if (rng.Chance(0.85)) {
          Append(&name, " ", suffix);
        }
        if (shape > 0.998) {
          // A rename recorded on a second line.
          Append(&name, "\n(formerly ", rng.Pick(kNameFirst), " ", rng.Pick(kNameSecond), ")");
        }
      }

      std::string domain = Slug(base);
      const int seen = domains[domain]++;
      if (seen > 0) Append(&domain, seen + 1);
      Append(&domain, country.tld);

      const bool no_country = rng.Chance(0.01);
      const std::string_view industry = rng.Pick(kIndustries);
      const bool no_industry = rng.Chance(0.02);
      // Log-uniform, skewed to small companies: 2 to 250,000 employees.
      const int64_t employees = static_cast<int64_t>(std::llround(std::exp(
          std::log(2.0) + std::pow(rng.Unit(), 1.6) * (std::log(250000.0) - std::log(2.0)))));
      const bool no_employees = rng.Chance(0.03);
      const double revenue =
          std::round(static_cast<double>(employees) * static_cast<double>(rng.Between(60, 450))) *
          1000.0;
      const bool no_revenue = rng.Chance(no_employees ? 0.5 : 0.08);
      const double intent = rng.Score();
      const bool no_intent = rng.Chance(0.04);
      const double engagement = rng.Score();
      const bool no_engagement = rng.Chance(0.04);
      const bool customer = rng.Chance(0.22);
      const int64_t created = now_ - rng.Between(30 * kDay, 8 * kYear);
      const std::string created_text = FormatTimestamp(created);

      EXPORTD_RETURN_IF_ERROR(insert.Insert({
          Int(id),
          Text(name),
          Text(domain),
          OrNull(no_industry, industry),
          OrNull(no_employees, employees),
          OrNull(no_revenue, revenue),
          OrNull(no_country, country.code),
          OrNull(no_country, country.region),
          OrNull(no_intent, intent),
          OrNull(no_engagement, engagement),
          Bool(customer),
          Text(created_text),
      }));
      accounts_.push_back(
          {std::move(name), std::move(domain), no_country ? -1 : country_index, created,
           1.0 + std::log10(static_cast<double>(employees)),
           std::clamp(static_cast<double>(employees) * 2000.0, 20000.0, 1500000.0)});
    }
    return absl::OkStatus();
  }

  std::vector<double> AccountWeights(bool by_size) const {
    std::vector<double> weights;
    weights.reserve(accounts_.size());
    for (const AccountInfo& account : accounts_) weights.push_back(by_size ? account.weight : 1.0);
    return weights;
  }

  [[nodiscard]] absl::Status People() {
    EXPORTD_ASSIGN_OR_RETURN(Inserter insert,
                             Inserter::Prepare(db_, EntityOf(exportjobs::v1::ENTITY_TYPE_PEOPLE)));
    Rng rng = StreamRng(kPeopleStream);
    const std::vector<int32_t> counts = Distribute(sizes_.people, AccountWeights(true), rng);
    first_person_.assign(accounts_.size(), 0);
    person_count_ = counts;
    int64_t id = 1;
    std::vector<std::string> emails;
    for (size_t a = 0; a < accounts_.size(); ++a) {
      const AccountInfo& account = accounts_[a];
      first_person_[a] = id;
      emails.clear();
      for (int32_t n = 0; n < counts[a]; ++n, ++id) {
        const std::string_view first = rng.Pick(kFirstNames);
        const std::string_view last = rng.Pick(kLastNames);
        std::string local = Cat(Slug(first), ".", Slug(last));
        std::string email = Cat(local, "@", account.domain);
        for (int suffix = 2; std::find(emails.begin(), emails.end(), email) != emails.end();
             ++suffix) {
          email = Cat(local, suffix, "@", account.domain);
        }
        emails.push_back(email);

        const std::string_view seniority = kSeniorities[rng.Weighted(kSeniorities)].name;
        const Department& department = rng.Pick(kDepartments);
        std::string title;
        if (seniority == "C-Level") {
          title = department.chief;
        } else if (seniority == "VP") {
          title = rng.Chance(0.5) ? Cat("VP, ", department.name) : Cat("VP of ", department.name);
        } else if (seniority == "Director") {
          title = Cat("Director of ", department.name);
        } else if (seniority == "Manager") {
          title = Cat(department.name, " Manager");
        } else {
          title = department.individuals[rng.Below(3)];
        }
        const bool no_title = rng.Chance(0.03);
        int country = account.country;
        if (rng.Chance(0.15)) {
          country = static_cast<int>(rng.Weighted(kCountries));
        }
        const bool no_country = country < 0 || rng.Chance(0.02);
        const double engagement = rng.Score();
        const bool no_engagement = rng.Chance(0.06);
        const bool opt_out = rng.Chance(0.07);
        const std::string created = FormatTimestamp(rng.Between(account.created_at, now_ - 1));

        EXPORTD_RETURN_IF_ERROR(insert.Insert({
            Int(id),
            Int(static_cast<int64_t>(a) + 1),
            std::string_view(first),
            std::string_view(last),
            Text(email),
            OrNull(no_title, std::string_view(title)),
            std::string_view(seniority),
            department.name,
            OrNull(no_country, no_country ? std::string_view() : kCountries[country].code),
            OrNull(no_engagement, engagement),
            Bool(opt_out),
            Text(created),
        }));
      }
    }
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status Opportunities() {
    EXPORTD_ASSIGN_OR_RETURN(
        Inserter insert,
        Inserter::Prepare(db_, EntityOf(exportjobs::v1::ENTITY_TYPE_OPPORTUNITIES)));
    Rng rng = StreamRng(kOpportunityStream);
    const std::vector<int32_t> counts =
        Distribute(sizes_.opportunities, AccountWeights(false), rng);
    int64_t id = 1;
    for (size_t a = 0; a < accounts_.size(); ++a) {
      const AccountInfo& account = accounts_[a];
      for (int32_t n = 0; n < counts[a]; ++n, ++id) {
        const Stage& stage = kOpportunityStages[rng.Weighted(kOpportunityStages)];
        const bool closed = stage.name.starts_with("Closed");
        const std::string name = Cat(account.name, " - ", rng.Pick(kOpportunityKinds));
        // Log-uniform from 2,000 to what the company can spend (at most 1,500,000), in hundreds.
        const double amount =
            std::round(
                std::exp(std::log(2000.0) + rng.Unit() * std::log(account.max_amount / 2000.0)) /
                100.0) *
            100.0;
        const bool no_amount = rng.Chance(0.03);
        const int64_t close = closed ? Midnight(now_ - rng.Between(1, 730) * kDay)
                                     : Midnight(now_ + rng.Between(7, 365) * kDay);
        int64_t created = close - rng.Between(14, 270) * kDay + rng.Between(0, kDay - 1);
        created = std::min(created, now_ - rng.Between(1, kDay));
        const std::string close_text = FormatTimestamp(close);
        const std::string created_text = FormatTimestamp(created);

        EXPORTD_RETURN_IF_ERROR(insert.Insert({
            Int(id),
            Int(static_cast<int64_t>(a) + 1),
            Text(name),
            stage.name,
            OrNull(no_amount, amount),
            Int(stage.probability),
            Text(close_text),
            Bool(closed),
            Bool(stage.name == "Closed Won"),
            Text(created_text),
        }));
      }
    }
    return absl::OkStatus();
  }

  std::string Subject(std::string_view type, Rng& rng) const {
    const std::string_view topic = rng.Pick(kTopics);
    if (type == "email") {
      switch (rng.Below(6)) {
        case 0:
          return Cat("Re: Pricing for ", rng.Between(5, 500), " seats");
        case 1:
          return Cat("Follow-up: ", topic);
        case 2:
          return Cat("Re: \"", topic, "\" proposal, revised");
        case 3:
          return Cat("Notes from our call\nNext steps: ", topic);
        case 4:
          return Cat("Quick question about ", topic);
        default:
          return Cat("Invoice #INV-", rng.Between(10000, 99999));
      }
    }
    if (type == "call") {
      switch (rng.Below(4)) {
        case 0:
          return "Discovery call";
        case 1:
          return Cat("Call about ", topic);
        case 2:
          return Cat("Pricing discussion, round ", rng.Between(1, 4));
        default:
          return "Check-in";
      }
    }
    if (type == "meeting") {
      switch (rng.Below(3)) {
        case 0:
          return "Quarterly business review";
        case 1:
          return Cat("Product demo: ", topic);
        default:
          return Cat("Onsite workshop, day ", rng.Between(1, 3));
      }
    }
    if (type == "web_visit") return std::string(rng.Pick(kPages));
    switch (rng.Below(4)) {
      case 0:
        return Cat("Download: ", rng.Pick(kAssets));
      case 1:
        return Cat("Webinar registration: \"", topic, "\"");
      case 2:
        return "Contact sales";
      default:
        return "Free trial sign-up";
    }
  }

  [[nodiscard]] absl::Status Activities() {
    EXPORTD_ASSIGN_OR_RETURN(
        Inserter insert, Inserter::Prepare(db_, EntityOf(exportjobs::v1::ENTITY_TYPE_ACTIVITIES)));
    Rng rng = StreamRng(kActivityStream);
    const std::vector<int32_t> counts = Distribute(sizes_.activities, AccountWeights(true), rng);
    int64_t id = 1;
    for (size_t a = 0; a < accounts_.size(); ++a) {
      for (int32_t n = 0; n < counts[a]; ++n, ++id) {
        const std::string_view type = kActivityTypes[rng.Weighted(kActivityTypes)].name;
        const int32_t people = person_count_[a];
        const bool anonymous = people == 0 || (type == "web_visit" && rng.Chance(0.35));
        const int64_t person = anonymous ? 0 : first_person_[a] + rng.Below(people);
        const std::string subject = Subject(type, rng);
        const bool no_subject = rng.Chance(0.03);
        int64_t duration = 0;
        if (type == "call") duration = rng.Between(60, 3600);
        if (type == "meeting") duration = rng.Between(15, 90) * 60;
        if (type == "web_visit") duration = rng.Between(5, 900);
        const std::string occurred = FormatTimestamp(now_ - rng.Between(0, 2 * kYear));

        EXPORTD_RETURN_IF_ERROR(insert.Insert({
            Int(id),
            Int(static_cast<int64_t>(a) + 1),
            OrNull(anonymous, person),
            type,
            OrNull(no_subject, std::string_view(subject)),
            OrNull(duration == 0, duration),
            Text(occurred),
        }));
      }
    }
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status Campaigns() {
    EXPORTD_ASSIGN_OR_RETURN(
        Inserter insert, Inserter::Prepare(db_, EntityOf(exportjobs::v1::ENTITY_TYPE_CAMPAIGNS)));
    Rng rng = StreamRng(kCampaignStream);
    for (int64_t id = 1; id <= sizes_.campaigns; ++id) {
      const Channel& channel = rng.Pick(kChannels);
      const int64_t start = Midnight(now_ - rng.Between(-90, 3 * 365) * kDay);
      const bool always_on = rng.Chance(0.05);
      const int64_t end = start + rng.Between(14, 120) * kDay;
      const std::string_view status = start > now_                 ? "planned"
                                      : (!always_on && end < now_) ? "completed"
                                                                   : "active";
      const std::string start_text = FormatTimestamp(start);
      const std::string end_text = FormatTimestamp(end);
      const std::string name =
          Cat(start_text.substr(0, 4), " Q", (std::stoi(start_text.substr(5, 2)) - 1) / 3 + 1, " ",
              rng.Pick(kCampaignThemes), " - ", channel.label);
      const double budget = static_cast<double>(rng.Between(10, 5000) * 100);
      const bool planned = status == "planned";
      double share = 1.0;  // Of the planned reach, so far.
      if (status == "active") {
        const int64_t length = std::max<int64_t>(end - start, kDay);
        share =
            std::clamp(static_cast<double>(now_ - start) / static_cast<double>(length), 0.02, 1.0);
      }
      const int64_t impressions = static_cast<int64_t>(
          static_cast<double>(rng.Between(channel.min_impressions, channel.max_impressions)) *
          share);
      const int64_t clicks =
          static_cast<int64_t>(static_cast<double>(impressions) * (0.002 + 0.048 * rng.Unit()));
      const int64_t conversions =
          static_cast<int64_t>(static_cast<double>(clicks) * (0.01 + 0.14 * rng.Unit()));

      EXPORTD_RETURN_IF_ERROR(insert.Insert({
          Int(id),
          Text(name),
          channel.name,
          status,
          budget,
          OrNull(planned, impressions),
          OrNull(planned, clicks),
          OrNull(planned, conversions),
          Text(start_text),
          OrNull(always_on, std::string_view(end_text)),
      }));
    }
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status BuyingGroups() {
    EXPORTD_ASSIGN_OR_RETURN(
        Inserter insert,
        Inserter::Prepare(db_, EntityOf(exportjobs::v1::ENTITY_TYPE_BUYING_GROUPS)));
    Rng rng = StreamRng(kBuyingGroupStream);
    const std::vector<int32_t> counts =
        Distribute(sizes_.buying_groups, AccountWeights(false), rng);
    int64_t id = 1;
    for (size_t a = 0; a < accounts_.size(); ++a) {
      const AccountInfo& account = accounts_[a];
      for (int32_t n = 0; n < counts[a]; ++n, ++id) {
        const std::string name = Cat(rng.Pick(kSolutions), " buying group");
        const std::string_view stage = kBuyingStages[rng.Weighted(kBuyingStages)].name;
        const double engagement = rng.Score();
        const bool no_engagement = rng.Chance(0.05);
        const std::string created = FormatTimestamp(rng.Between(account.created_at, now_ - 1));

        EXPORTD_RETURN_IF_ERROR(insert.Insert({
            Int(id),
            Int(static_cast<int64_t>(a) + 1),
            Text(name),
            stage,
            Int(rng.Between(2, 12)),
            OrNull(no_engagement, engagement),
            Text(created),
        }));
      }
    }
    return absl::OkStatus();
  }

  sqlite3* const db_;
  const DemoDataOptions& options_;
  const DemoDataSizes sizes_;
  const int64_t now_;
  std::vector<AccountInfo> accounts_;
  std::vector<int64_t> first_person_;  // Per account: the id of its first person.
  std::vector<int32_t> person_count_;  // Per account: how many people it has.
};

absl::Status ValidateOptions(const DemoDataOptions& options) {
  if (options.accounts < 0 || options.accounts > kMaxAccounts) {
    return absl::InvalidArgumentError(
        Cat("accounts: must be between 0 and ", kMaxAccounts, ", got ", options.accounts));
  }
  const std::pair<std::string_view, double> ratios[] = {
      {"people_per_account", options.people_per_account},
      {"opportunities_per_account", options.opportunities_per_account},
      {"activities_per_account", options.activities_per_account},
      {"buying_groups_per_account", options.buying_groups_per_account},
  };
  for (const auto& [name, ratio] : ratios) {
    if (!std::isfinite(ratio) || ratio < 0 || ratio > 1000) {
      return absl::InvalidArgumentError(Cat(name, ": must be between 0 and 1000, got ", ratio));
    }
  }
  if (options.campaigns < -1 || options.campaigns > kMaxAccounts) {
    return absl::InvalidArgumentError(Cat("campaigns: must be -1 (the default) or between 0 and ",
                                          kMaxAccounts, ", got ", options.campaigns));
  }
  return absl::OkStatus();
}

absl::Status SystemError(std::string_view what, const std::string& path) {
  return absl::UnavailableError(Cat("demo data: ", what, " ", path, ": ", std::strerror(errno)));
}

absl::Status SyncPath(const std::string& path, int flags) {
  const int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return SystemError("opening", path);
  const bool synced = fsync(fd) == 0;
  const int saved = errno;
  close(fd);
  errno = saved;
  if (!synced) return SystemError("syncing", path);
  return absl::OkStatus();
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Writes the database to `temp`, then syncs it.
absl::Status WriteDatabase(const std::string& temp, const DemoDataOptions& options) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      temp.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> owner(db, &sqlite3_close);
  if (rc != SQLITE_OK) {
    return absl::UnavailableError(Cat("demo data: opening ", temp, ": ",
                                      db == nullptr ? sqlite3_errstr(rc) : sqlite3_errmsg(db)));
  }
  sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DML, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DDL, 0, nullptr);
  // A fresh file that is renamed into place only when complete needs no journal and no
  // intermediate syncs.
  EXPORTD_RETURN_IF_ERROR(Exec(db,
                               "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; "
                               "PRAGMA locking_mode = EXCLUSIVE; PRAGMA cache_size = -131072; "
                               "PRAGMA temp_store = MEMORY; BEGIN"));
  EXPORTD_RETURN_IF_ERROR(Generator(db, options).Run());
  EXPORTD_RETURN_IF_ERROR(Exec(db, "COMMIT"));
  if (sqlite3_close(owner.release()) != SQLITE_OK) {
    return absl::UnavailableError(Cat("demo data: closing ", temp));
  }
  return SyncPath(temp, O_RDONLY);
}

}  // namespace

DemoDataSizes DemoSizes(const DemoDataOptions& options) {
  const auto scaled = [&](double ratio) {
    return static_cast<int64_t>(std::llround(static_cast<double>(options.accounts) * ratio));
  };
  DemoDataSizes sizes;
  sizes.accounts = options.accounts;
  sizes.people = scaled(options.people_per_account);
  sizes.opportunities = scaled(options.opportunities_per_account);
  sizes.activities = scaled(options.activities_per_account);
  sizes.campaigns = options.campaigns >= 0 ? options.campaigns : options.accounts / 100 + 10;
  sizes.buying_groups = scaled(options.buying_groups_per_account);
  return sizes;
}

absl::Status GenerateDemoData(const std::string& path, const DemoDataOptions& options) {
  EXPORTD_RETURN_IF_ERROR(ValidateOptions(options));
  struct stat info;
  if (stat(path.c_str(), &info) == 0) {
    if (!options.overwrite) {
      return absl::AlreadyExistsError(Cat("demo data: ", path, " already exists"));
    }
  } else if (errno != ENOENT) {
    return SystemError("checking", path);
  }
  const std::string temp = Cat(path, ".tmp");
  if (unlink(temp.c_str()) != 0 && errno != ENOENT) return SystemError("removing", temp);

  absl::Status written = WriteDatabase(temp, options);
  if (!written.ok()) {
    unlink(temp.c_str());
    return written;
  }
  if (rename(temp.c_str(), path.c_str()) != 0) {
    absl::Status renamed = SystemError("renaming to", path);
    unlink(temp.c_str());
    return renamed;
  }
  return SyncPath(DirectoryOf(path), O_RDONLY | O_DIRECTORY);
}

}  // namespace exportd
