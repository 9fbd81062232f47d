#pragma once

// The report page (issue 23): one self-contained HTML document drawn from BuildReport's JSON
// (report/report.h). No script, no external resource: inline CSS and SVG only, and a
// Content-Security-Policy that forbids anything else, so the page opens the same offline, from
// an e-mail or a ticket. Every text from the cluster (names, messages, Events) is escaped.
//
// The timeline of each import is an SVG Gantt chart: one lane per phase, the bar of a phase at
// x = kBarX + offset/total * kBarWidth, width max(kMinBar, seconds/total * kBarWidth) pixels,
// filled with PhaseColour(phase) (shape-rendering crispEdges: exact colours, whole pixels).

#include <string>
#include <string_view>

#include "report/report.h"

namespace vmimport::report {

inline constexpr int kBarX = 280;       //!< where the bars start in the timeline SVG
inline constexpr int kBarWidth = 600;   //!< the width of the whole import's duration
inline constexpr int kMinBar = 2;       //!< a phase shorter than this still shows
inline constexpr int kLaneHeight = 20;  //!< one lane per phase
inline constexpr int kBarHeight = 14;

//! "#rrggbb" of a phase (importStatus, or "pending"); a grey for a phase this version does not
//! know. Unique per phase and used nowhere else on the page.
std::string_view PhaseColour(std::string_view phase);

//! &, <, >, " and ' as entities; bytes that are not UTF-8 as U+FFFD.
std::string EscapeHtml(std::string_view text);

//! The page. Never throws.
std::string RenderHtml(const Json& report);

}  // namespace vmimport::report
