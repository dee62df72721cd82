// The console's entry module: sign-in, the views, the editor with its tabs and the run panel, history.
import { current, linkis, onSession, signIn, signOut } from "./api.js";
import { $, $$, h, renderLines, tabList } from "./dom.js";
import { initMaps, mapRequest } from "./maps.js";
import { renderResults } from "./results.js";
import { JobRun, elapsed } from "./run.js";
import { socket } from "./socket.js";
import { initWorks, showWorks } from "./works.js";

const SAMPLES = {
  sql: "select 1 as one",
  python: "for i in range(3):\n    print('hello', i)",
};
const tabs = [];
let active = -1;
let editor = null;

// -- sign in / out, views ---------------------------------------------------------------------------
function showView(name) {
  for (const section of $$(".view")) section.hidden = section.id !== `view-${name}`;
  for (const button of $$("#nav button")) {
    if (button.dataset.view === name) button.setAttribute("aria-current", "page"); else button.removeAttribute("aria-current");
  }
  if (name === "editor") editor?.refresh();
  if (name === "history") loadHistory();
  if (name === "works") showWorks();
}

function sessionChanged(session) {
  $("#nav").hidden = $("#who").hidden = !session;
  $("#user-name").textContent = session ? session.user : "";
  socket.start(session?.token || null);
  if (session) { showView("editor"); if (!tabs.length) newTab("sql"); editor.focus(); }
  else { showView("signin"); $("#signin-user").focus(); }
}

$("#signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#signin-error").textContent = "";
  try { await signIn($("#signin-user").value, $("#signin-password").value); $("#signin-password").value = ""; }
  catch (err) { $("#signin-error").textContent = err.message; }
});
$("#sign-out").addEventListener("click", () => signOut());
for (const button of $$("#nav button")) button.addEventListener("click", () => showView(button.dataset.view));

const CONN = { live: "live", connecting: "connecting...", lost: "socket lost: following over HTTP", off: "HTTP only" };
socket.onState((state) => { $("#conn").textContent = CONN[state]; $("#conn").dataset.state = state; });

// -- the editor and its tabs ------------------------------------------------------------------------
function newTab(runType, code = SAMPLES[runType], run = null) {
  const mode = runType === "python" ? "python" : "text/x-sparksql";
  const count = tabs.filter((t) => t.runType === runType).length + 1;
  tabs.push({ label: `${runType === "python" ? "Python" : "SQL"} ${count}`, runType, doc: CodeMirror.Doc(code, mode), run });
  selectTab(tabs.length - 1);
}

function selectTab(i) {
  active = i;
  tabList($("#code-tabs"), tabs.map((t, j) => ({ id: `code-tab-${j}`, label: t.label })), i, selectTab);
  editor.swapDoc(tabs[i].doc);
  bindRun(tabs[i].run);
}

editor = CodeMirror($("#editor-host"), {
  lineNumbers: true, mode: "text/x-sparksql", screenReaderLabel: "Code editor",
  extraKeys: { "Ctrl-Enter": () => run(), "Cmd-Enter": () => run(), Tab: false, "Shift-Tab": false },
});
$("#new-sql").addEventListener("click", () => newTab("sql"));
$("#new-python").addEventListener("click", () => newTab("python"));
$("#run").addEventListener("click", () => run());
$("#kill").addEventListener("click", () => tabs[active]?.run?.kill().catch((err) => alert(err.message)));

// -- a run, shown while its tab is selected ---------------------------------------------------------
let shown = null, ticker = null;
const onChange = (event) => paint(event.currentTarget, event.detail);

function bindRun(run) {
  if (shown) shown.removeEventListener("change", onChange);
  shown = run;
  if (run) run.addEventListener("change", onChange);
  paint(run, "all");
}

function paint(run, what) {
  if (run !== shown) return;
  $("#run-status").textContent = run ? run.status : "-";
  $("#run-elapsed").textContent = elapsed(run);
  $("#kill").disabled = !run || run.final || !run.execID;
  $("#run-progress").value = run ? run.progress : 0;
  $("#run-progress-info").textContent = (run?.progressInfo || [])
    .map((p) => `job ${p.id}: ${p.succeedTasks}/${p.totalTasks}`).join(", ");
  const follow = $("#log-follow").checked;
  if (what === "all") renderLines($("#log"), run ? run.lines : [], 0, follow);
  else if (what && what.lines !== undefined) renderLines($("#log"), run.lines, what.lines, follow);
  if (what === "all" || what === "results") renderResults($("#results"), run);
  clearInterval(ticker);
  if (run && !run.final) ticker = setInterval(() => { $("#run-elapsed").textContent = elapsed(run); }, 200);
}

$("#log-level").addEventListener("change", (e) => { $("#log").dataset.level = e.target.value; });

async function run() {
  const tab = tabs[active];
  if (!tab || (tab.run && !tab.run.final)) return;
  const code = editor.somethingSelected() ? editor.getSelection() : editor.getValue();
  const job = new JobRun(code, tab.runType);
  tab.run = job; bindRun(job);
  try { await job.submit(); }
  catch (err) {
    job.status = "Failed"; job.error = { message: err.message, errors: [] }; job.endedAt = Date.now(); job.emit("results");
  }
}

// -- history ----------------------------------------------------------------------------------------
let historyPage = 1;
async function loadHistory() {
  const status = $("#history-status").value;
  const body = $("#history-table tbody");
  try {
    const data = await linkis("GET", `/jobhistory/list?pageNow=${historyPage}&pageSize=20${status ? `&status=${status}` : ""}`);
    const pages = Math.max(1, Math.ceil(Number(data.totalPage) / 20));
    $("#history-page").textContent = `page ${historyPage} of ${pages}`;
    $("#history-prev").disabled = historyPage <= 1; $("#history-next").disabled = historyPage >= pages;
    body.replaceChildren(...data.tasks.map((task) => h("tr", {},
      h("td", { text: task.taskID }), h("td", { text: task.status }), h("td", { text: task.runType }),
      h("td", { text: new Date(task.createdTime).toLocaleString() }),
      h("td", { text: task.costTime ? `${(task.costTime / 1000).toFixed(1)} s` : "" }),
      h("td", {}, h("code", { text: (task.executionCode || "").slice(0, 80) })),
      h("td", {}, h("button", { type: "button", onclick: () => reopen(task) }, `Open ${task.taskID}`)))));
  } catch (err) { body.replaceChildren(h("tr", {}, h("td", { colspan: "7", class: "error", text: err.message }))); }
}

async function reopen(task) {
  const run = await JobRun.fromHistory(task);
  newTab(run.runType === "python" || run.runType === "py" ? "python" : "sql", run.code, run);
  tabs[active].label = `Job ${task.taskID}`;
  selectTab(active);
  showView("editor");
}
$("#history-refresh").addEventListener("click", () => { historyPage = 1; loadHistory(); });
$("#history-status").addEventListener("change", () => { historyPage = 1; loadHistory(); });
$("#history-prev").addEventListener("click", () => { historyPage -= 1; loadHistory(); });
$("#history-next").addEventListener("click", () => { historyPage += 1; loadHistory(); });

initWorks();
initMaps();
onSession(sessionChanged);
sessionChanged(current());
window.sparkgateConsole = { socket, tabs, mapRequest };  // for the browser tests and the curious
