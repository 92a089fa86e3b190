// samtrack viewer: the concepts panel ("track every X") and the lifecycle events' log. Loaded after viewer.js,
// whose request(), showError(), $() and stream it uses; viewer.js calls refreshConcepts(), showConcepts() and
// logEvent() once messages arrive.
"use strict";

const EVENT_LOG = 12;         // lifecycle events listed, newest first: a short log, never a growing one

function refreshConcepts() {
  request("list_concepts", {}, true).then((r) => {
    if (r && r.ok && Array.isArray(r.result.concepts)) showConcepts(r.result.concepts);
  });
}

function showConcepts(list) {
  $("concepts").replaceChildren(...list.map((c) => {
    const li = document.createElement("li"), name = document.createElement("span");
    const remove = document.createElement("button");
    li.dataset.text = c.text;
    name.textContent = c.text + (typeof c.threshold === "number" ? `  >= ${c.threshold}` : "");
    remove.textContent = "Remove";
    remove.className = "remove-concept";
    remove.onclick = () => request("remove_concept", {text: c.text}).then(refreshConcepts);
    li.append(name, remove);
    return li;
  }));
}

function logEvent(e) {
  const li = document.createElement("li");
  li.dataset.kind = e.kind;
  li.dataset.object = e.object;
  const score = typeof e.score === "number" ? ` (${e.score.toFixed(2)})` : "";
  li.textContent = `frame ${e.frame}: #${e.object} ${e.label ?? ""} ${e.kind}${score}`;
  $("events").prepend(li);
  while ($("events").children.length > EVENT_LOG) $("events").lastElementChild.remove();
}

$("concept-form").onsubmit = (ev) => {
  ev.preventDefault();
  const text = $("concept-text").value.trim();
  if (!text) return showError("type what to track, e.g. forklift", "no_text");
  const threshold = $("concept-threshold").value;  // empty: the daemon's default
  request("add_concept", threshold === "" ? {text} : {text, threshold: Number(threshold)}).then((r) => {
    if (r && r.ok) $("concept-text").value = "";
    refreshConcepts();
  });
};
