// The SLA section of a model card (README.md): says that SLA is required at inference (the line
// SimpleTuner writes), the settings and the variant. The section sits between two HTML comment
// markers so a later push replaces it instead of adding a second one.
#pragma once

#include "sla/checkpoint/sla_state.h"

#include <string>

namespace sla::hub {

inline constexpr const char* kCardSectionBegin = "<!-- sla-toolkit:sla-section:begin -->";
inline constexpr const char* kCardSectionEnd = "<!-- sla-toolkit:sla-section:end -->";
inline constexpr const char* kSlaRequiredLine =
    "SLA: Enabled (you MUST use SLA for inference; sla_attention.pt contains attention weights)";

std::string sla_card_section(const sla::checkpoint::SlaFile& sla);

// The card with its text kept: the marked section replaced, or appended when absent; a bare
// SLA-required line elsewhere (SimpleTuner writes one) is dropped, since the section carries it;
// the tags sla and sparse-linear-attention merged into the YAML front matter (a block or flow
// `tags` list; added when absent), or a front matter added when the card has none.
std::string with_sla_section(const std::string& card, const sla::checkpoint::SlaFile& sla);

}  // namespace sla::hub
