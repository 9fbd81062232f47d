#include "report/html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/json.h"
#include "core/strings.h"

namespace vmimport::report {
namespace {

using core::JsonArray;
using core::JsonObject;
using core::JsonString;

std::string Bytes(double bytes) {
  char buf[48];
  if (bytes >= 1024.0 * 1024 * 1024) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
  } else if (bytes >= 1024.0 * 1024) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", bytes / (1024.0 * 1024));
  } else {
    std::snprintf(buf, sizeof(buf), "%.0f B", bytes);
  }
  return buf;
}

std::string Seconds(double s) {
  char buf[48];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%dh %02dm", static_cast<int>(s / 3600),
                  static_cast<int>(std::fmod(s, 3600) / 60));
  } else if (s >= 60) {
    std::snprintf(buf, sizeof(buf), "%dm %02ds", static_cast<int>(s / 60),
                  static_cast<int>(std::fmod(s, 60)));
  } else {
    std::snprintf(buf, sizeof(buf), "%.2f s", s);
  }
  return buf;
}

double Number(const Json& j, std::string_view key) { return core::JsonNumber(j, key).value_or(0); }

std::string Esc(const Json& j, std::string_view key) { return EscapeHtml(JsonString(j, key)); }

// A row of a key/value list; `value` is HTML already.
std::string Fact(std::string_view key, const std::string& value) {
  return "<dt>" + std::string(key) + "</dt><dd>" + value + "</dd>";
}

std::string Timeline(const Json& timeline) {
  const Json& phases = JsonArray(timeline, "phases");
  if (phases.empty()) {
    const std::string note = JsonString(timeline, "note");
    return R"(<p class="note">)" + EscapeHtml(note.empty() ? "no phases yet" : note) + "</p>";
  }
  const double total = std::max(Number(timeline, "seconds"), 1e-6);
  const int height = static_cast<int>(phases.size()) * kLaneHeight + 24;
  std::string out = R"(<svg class="timeline" width=")" + std::to_string(kBarX + kBarWidth + 10) +
                    R"(" height=")" + std::to_string(height) + R"(" shape-rendering="crispEdges">)";
  int lane = 0;
  for (const Json& p : phases) {
    const std::string phase = JsonString(p, "phase");
    const double offset = Number(p, "offsetSeconds");
    const double seconds = Number(p, "seconds");
    const int x = kBarX + static_cast<int>(std::lround(offset / total * kBarWidth));
    const int w = std::max(kMinBar, static_cast<int>(std::lround(seconds / total * kBarWidth)));
    const int y = lane * kLaneHeight + 3;
    out += R"(<g class="phase" data-phase=")" + EscapeHtml(phase) + R"("><text x="0" y=")" +
           std::to_string(y + 11) + R"(">)" + EscapeHtml(phase) + " · " + Seconds(seconds) +
           R"(</text><rect x=")" + std::to_string(x) + R"(" y=")" + std::to_string(y) +
           R"(" width=")" + std::to_string(w) + R"(" height=")" + std::to_string(kBarHeight) +
           R"(" fill=")" + std::string(PhaseColour(phase)) + R"("><title>)" + EscapeHtml(phase) +
           ": " + Esc(p, "start") + " → " + Esc(p, "end") + "</title></rect></g>";
    ++lane;
  }
  // The axis: 0 and the total.
  const int axis = lane * kLaneHeight + 16;
  out += R"(<text class="axis" x=")" + std::to_string(kBarX) + R"(" y=")" + std::to_string(axis) +
         R"(">0</text><text class="axis" x=")" + std::to_string(kBarX + kBarWidth) + R"(" y=")" +
         std::to_string(axis) + R"(" text-anchor="end">)" + Seconds(Number(timeline, "seconds")) +
         (core::JsonBool(timeline, "ongoing").value_or(false) ? " (ongoing)" : "") +
         "</text></svg>";
  return out;
}

std::string Verification(const Json& disk) {
  std::string out;
  for (const Json& v : JsonArray(disk, "verification")) {
    const std::string result = JsonString(v, "result");
    out += R"(<div class="check )" + std::string(result == "verified" ? "ok" : "bad") + R"(">)" +
           Esc(v, "verifier") + " " + Esc(v, "algorithm") + ": " + EscapeHtml(result);
    if (!JsonString(v, "digest").empty()) {
      out += " <code>" + Esc(v, "digest") + "</code>";
    }
    if (!JsonString(v, "message").empty()) {
      out += " (" + Esc(v, "message") + ")";
    }
    out += "</div>";
  }
  return out.empty() ? R"(<span class="note">not verified</span>)" : out;
}

std::string DisksTable(const Json& disks) {
  if (disks.empty()) {
    return "";
  }
  std::string out =
      R"(<table class="disks"><tr><th>disk</th><th>size</th><th>done</th><th>bus</th>)"
      "<th>storage class</th><th>digests</th><th>verified by</th></tr>";
  for (const Json& d : disks) {
    std::string digests;
    for (const char* alg : {"sha256", "sha512"}) {
      if (!JsonString(d, alg).empty()) {
        digests += "<div>" + std::string(alg) + " <code>" + Esc(d, alg) + "</code></div>";
      }
    }
    const std::string cls = JsonString(d, "storageClass");
    out += "<tr><td>" + Esc(d, "name") + "</td><td>" + Bytes(Number(d, "sizeBytes")) + "</td><td>" +
           Bytes(Number(d, "bytesDone")) + "</td><td>" + Esc(d, "bus") + "</td><td>" +
           (cls.empty() ? "(cluster default)" : EscapeHtml(cls)) + "</td><td>" + digests +
           "</td><td>" + Verification(d) + "</td></tr>";
  }
  return out + "</table>";
}

std::string DiskLines(const Json& side, bool target) {
  std::string out;
  for (const Json& d : JsonArray(side, "disks")) {
    out += "<div>" + Esc(d, "name") + ": ";
    if (target) {
      out += "bus " + Esc(d, "bus") + ", class " + Esc(d, "storageClass") + ", claim " +
             Esc(d, "claim");
    } else {
      out += Bytes(Number(d, "sizeBytes")) + ", bus " + Esc(d, "bus") + ", on " + Esc(d, "storage");
    }
    out += "</div>";
  }
  return out;
}

std::string NicLines(const Json& side) {
  std::string out;
  for (const Json& n : JsonArray(side, "nics")) {
    out += "<div><code>" + Esc(n, "mac") + "</code> " + Esc(n, "model") + " on " +
           Esc(n, "network") + "</div>";
  }
  return out;
}

std::string HardwareTable(const Json& hardware) {
  const Json& src = JsonObject(hardware, "source");
  const Json& dst = JsonObject(hardware, "target");
  auto cell = [](const Json& side, std::string_view key) {
    return side.empty() ? std::string(R"(<span class="note">unknown</span>)") : Esc(side, key);
  };
  std::string out = R"(<table class="hardware"><tr><th></th><th>source</th><th>target</th></tr>)"
                    "<tr><th>VM</th><td>" +
                    cell(src, "path") + "</td><td>" + cell(dst, "name") + " " +
                    cell(dst, "status") + "</td></tr>";
  for (const char* key : {"cpu", "memory", "firmware"}) {
    out += "<tr><th>" + std::string(key) + "</th><td>" + cell(src, key) + "</td><td>" +
           cell(dst, key) + "</td></tr>";
  }
  out += "<tr><th>disks</th><td>" + DiskLines(src, false) + "</td><td>" + DiskLines(dst, true) +
         "</td></tr><tr><th>NICs</th><td>" + NicLines(src) + "</td><td>" + NicLines(dst) +
         "</td></tr></table>";
  return out;
}

std::string EventsTable(const Json& events) {
  if (events.empty()) {
    return R"(<p class="note">no Events (the API server keeps them for an hour)</p>)";
  }
  std::string out =
      R"(<table class="events"><tr><th>time</th><th>type</th><th>reason</th><th>message</th></tr>)";
  for (const Json& e : events) {
    out += R"(<tr class=")" + std::string(JsonString(e, "type") == "Warning" ? "warn" : "") +
           R"("><td>)" + Esc(e, "time") + "</td><td>" + Esc(e, "type") + "</td><td>" +
           Esc(e, "reason") + "</td><td>" + Esc(e, "message") + "</td></tr>";
  }
  return out + "</table>";
}

std::string ImportSection(const Json& imp) {
  const std::string phase = JsonString(imp, "phase");
  std::string out = R"(<section class="import" id="import-)" + Esc(imp, "name") + R"("><h2>)" +
                    Esc(imp, "name") + R"( <span class="phase" style="background:)" +
                    std::string(PhaseColour(phase)) + R"(">)" + EscapeHtml(phase) +
                    "</span></h2><dl>";
  out += Fact("namespace", Esc(imp, "namespace"));
  if (!JsonString(imp, "plan").empty()) {
    out += Fact("plan", Esc(imp, "plan"));
  }
  out += Fact("source VM", Esc(imp, "sourceVm"));
  out += Fact("target VM", Esc(imp, "targetVm"));
  const Json& timeline = JsonObject(imp, "timeline");
  out += Fact("started", Esc(timeline, "start"));
  out += Fact("ended", core::JsonBool(timeline, "ongoing").value_or(true) ? std::string("(ongoing)")
                                                                          : Esc(timeline, "end"));
  out += Fact("duration", Seconds(Number(timeline, "seconds")));
  out += Fact("bytes", Bytes(Number(imp, "bytesDone")) + " of " + Bytes(Number(imp, "bytesTotal")));
  if (core::JsonMember(imp, "throughputBytesPerSecond") != nullptr) {
    out += Fact("throughput", Bytes(Number(imp, "throughputBytesPerSecond")) + "/s over " +
                                  Seconds(Number(imp, "transferSeconds")));
  }
  const Json& downtime = JsonObject(imp, "downtime");
  if (core::JsonMember(downtime, "seconds") != nullptr) {
    out += Fact("downtime", Seconds(Number(downtime, "seconds")) + " (source off " +
                                Esc(downtime, "sourcePoweredOffAt") + ", target running " +
                                Esc(downtime, "targetRunningAt") + ")");
  } else {
    out += Fact("downtime", R"(<span class="note">)" + Esc(downtime, "note") + "</span>");
  }
  out += "</dl><h3>Timeline</h3>" + Timeline(timeline);
  out += "<h3>Disks</h3>" + DisksTable(JsonArray(imp, "disks"));
  out += "<h3>Hardware</h3>" + HardwareTable(JsonObject(imp, "hardware"));
  const Json& warnings = JsonArray(imp, "warnings");
  if (!warnings.empty()) {
    out += R"(<h3>Warnings</h3><ul class="warnings">)";
    for (const Json& w : warnings) {
      out += "<li>" + EscapeHtml(w.is_string() ? w.get<std::string>() : w.dump()) + "</li>";
    }
    out += "</ul>";
  }
  out += "<h3>Events</h3>" + EventsTable(JsonArray(imp, "events")) + "</section>";
  return out;
}

std::string PlanSection(const Json& plan) {
  const Json& summary = JsonObject(plan, "summary");
  std::string out = R"(<section class="plan" id="plan-)" + Esc(plan, "name") + R"("><h1>Plan )" +
                    Esc(plan, "name") + R"( <span class="plan-phase">)" + Esc(plan, "phase") +
                    "</span></h1><p>" + Esc(plan, "reason") + ": " + Esc(plan, "message") +
                    "</p><dl>";
  out += Fact("namespace", Esc(plan, "namespace"));
  out +=
      Fact("imports",
           std::to_string(core::JsonInt(summary, "total").value_or(0)) + " (" +
               std::to_string(core::JsonInt(summary, "succeeded").value_or(0)) + " succeeded, " +
               std::to_string(core::JsonInt(summary, "running").value_or(0)) + " running, " +
               std::to_string(core::JsonInt(summary, "failed").value_or(0)) + " failed, " +
               std::to_string(core::JsonInt(summary, "notStarted").value_or(0)) + " not started)");
  out += Fact("bytes",
              Bytes(Number(summary, "bytesDone")) + " of " + Bytes(Number(summary, "bytesTotal")));
  if (core::JsonMember(plan, "durationSeconds") != nullptr) {
    out += Fact("duration", Seconds(Number(plan, "durationSeconds")) + " (" +
                                Esc(plan, "startedAt") + " → " + Esc(plan, "endedAt") + ")");
    out += Fact("rate", Bytes(Number(plan, "bytesPerSecond")) + "/s");
  }
  out += R"(</dl><table class="phases"><tr><th>phase</th><th>imports</th></tr>)";
  for (const auto& [phase, n] : JsonObject(summary, "byPhase").items()) {
    out += R"(<tr><td><span class="swatch" style="background:)" + std::string(PhaseColour(phase)) +
           R"("></span>)" + EscapeHtml(phase) + "</td><td>" +
           (n.is_number() ? std::to_string(n.get<int64_t>()) : std::string("?")) + "</td></tr>";
  }
  out += "</table>";
  const Json& attention = JsonArray(plan, "attention");
  if (!attention.empty()) {
    out += R"(<h3>Needs attention</h3><ul class="warnings">)";
    for (const Json& a : attention) {
      out += "<li>" + Esc(a, "vm") + " (" + Esc(a, "import") + "): " + Esc(a, "reason") + ": " +
             Esc(a, "message") + "</li>";
    }
    out += "</ul>";
  }
  out += R"(<h3>Imports</h3><ul class="imports">)";
  for (const Json& name : JsonArray(plan, "imports")) {
    const std::string n = name.is_string() ? name.get<std::string>() : "";
    out += R"(<li><a href="#import-)" + EscapeHtml(n) + R"(">)" + EscapeHtml(n) + "</a></li>";
  }
  out += "</ul><h3>Events</h3>" + EventsTable(JsonArray(plan, "events")) + "</section>";
  return out;
}

constexpr const char* kStyle =
    "body{font:14px/1.4 sans-serif;margin:16px;color:#222;background:#fff}"
    "h1{font-size:22px}h2{font-size:18px;border-top:2px solid #ddd;padding-top:12px}"
    "h3{font-size:15px;margin:14px 0 6px}"
    ".phase,.plan-phase{color:#fff;background:#555;border-radius:3px;padding:1px 6px;"
    "font-size:13px}"
    "dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:0}"
    "dt{color:#666}dd{margin:0}"
    "table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid #ddd;padding:3px 6px;"
    "text-align:left;vertical-align:top}th{background:#f4f4f4}"
    "code{font-size:11px;word-break:break-all}"
    ".swatch{display:inline-block;width:10px;height:10px;margin-right:6px}"
    ".ok{color:#1a7f37}.bad{color:#b00020}.note{color:#777}"
    ".warnings li,tr.warn td{color:#9a3412}"
    "svg.timeline text{font-size:12px;fill:#333}";

}  // namespace

std::string_view PhaseColour(std::string_view phase) {
  if (phase == "pending") {
    return "#8c8c8c";
  }
  if (phase == "virtualMachineImportValid") {
    return "#6a5acd";
  }
  if (phase == "sourceReady") {
    return "#e6a100";
  }
  if (phase == "disksExported") {
    return "#2e8bd8";
  }
  if (phase == "diskImageSubmitted") {
    return "#17a589";
  }
  if (phase == "diskImagesReady") {
    return "#8e44ad";
  }
  if (phase == "virtualMachineCreated") {
    return "#d35400";
  }
  if (phase == "virtualMachineRunning") {
    return "#2e7d32";
  }
  if (phase == "virtualMachineImportInvalid" || phase == "diskImageFailed" ||
      phase == "VMMigrationFailed") {
    return "#c0392b";
  }
  return "#5d6d7e";
}

std::string EscapeHtml(std::string_view text) {
  const std::string clean = core::SanitizeUtf8(text);
  std::string out;
  out.reserve(clean.size());
  for (char c : clean) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string RenderHtml(const Json& report) {
  std::string title = "vm-import report";
  const Json& plans = JsonArray(report, "plans");
  const Json& imports = JsonArray(report, "imports");
  if (plans.size() == 1) {
    title += ": plan " + JsonString(plans[0], "name");
  } else if (plans.empty() && imports.size() == 1) {
    title += ": " + JsonString(imports[0], "name");
  }
  std::string out = R"(<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">)"
                    // Nothing but this page's own inline style may load or run.
                    R"(<meta http-equiv="Content-Security-Policy" content="default-src 'none'; )"
                    R"(style-src 'unsafe-inline'"><title>)" +
                    EscapeHtml(title) + "</title><style>" + kStyle +
                    "</style></head><body><header><h1>" + EscapeHtml(title) +
                    R"(</h1><p class="note">generated )" + Esc(report, "generatedAt") +
                    " by kubectl vmimport report</p></header>";
  for (const Json& plan : plans) {
    out += PlanSection(plan);
  }
  for (const Json& imp : imports) {
    out += ImportSection(imp);
  }
  return out + "</body></html>\n";
}

}  // namespace vmimport::report
