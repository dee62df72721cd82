// The results of one Job: a tab per result set (paged grid with column names and types, row count,
// CSV download), printed output as text, and the error with its message and where it came from.
import { download, linkis } from "./api.js";
import { h, tabList } from "./dom.js";

const PAGE_SIZE = 50;

export function renderResults(host, run) {
  host.replaceChildren();
  if (!run || !run.task && !run.error) {
    host.append(h("p.muted", { text: run && !run.final ? "Results appear when the Job ends." : "No results yet." }));
    return;
  }
  const tabs = run.results.map((path, i) => ({ id: `result-tab-${i}`, label: `Result ${i + 1}`, path }));
  if (run.error) tabs.push({ id: "result-tab-error", label: "Error", error: run.error });
  if (!tabs.length) { host.append(h("p.muted", { text: "The Job ended with no result set." })); return; }
  const bar = h("div", { role: "tablist", "aria-label": "Result sets" });
  const panel = h("div", { role: "tabpanel", id: "result-panel", tabindex: "0" });
  host.append(bar, panel);
  const select = (i) => {
    tabList(bar, tabs, i, select);
    panel.setAttribute("aria-labelledby", tabs[i].id);
    if (tabs[i].error) showError(panel, tabs[i].error); else showSet(panel, tabs[i].path, 1);
  };
  select(run.error && run.status !== "Succeed" && !run.results.length ? tabs.length - 1 : 0);
}

function showError(panel, error) {
  panel.replaceChildren(h("div.error", { role: "alert", id: "result-error" },
    h("strong", { text: error.message }), error.code ? ` (code ${error.code})` : "",
    error.errors.length ? h("pre", { text: error.errors.slice(0, 40).join("\n") +
      (error.errors.length > 40 ? `\n... ${error.errors.length - 40} more ERROR lines in the log` : "") }) : null));
}

async function showSet(panel, path, page) {
  panel.replaceChildren(h("p.muted", { text: "Loading..." }));
  let data;
  try {
    data = await linkis("GET", `/filesystem/openFile?path=${encodeURIComponent(path)}&page=${page}&pageSize=${PAGE_SIZE}`);
  } catch (err) { panel.replaceChildren(h("p.error", { role: "alert", text: err.message })); return; }
  if (data.type === "1") {  // printed output
    panel.replaceChildren(h("pre.printed", { id: "result-text", text: data.fileContent.map((r) => r[0]).join("\n") }));
    return;
  }
  const total = Number(data.totalLine), pages = Math.max(1, Number(data.totalPage) || 1);
  const truncated = data.truncated ? " (truncated: more rows were produced than kept)" : "";
  const head = h("tr", {}, data.metadata.map((m) => h("th", { scope: "col" }, m.columnName, h("br"), h("small", { text: m.dataType }))));
  const body = data.fileContent.map((row) => h("tr", {}, row.map((cell) => h("td", { text: String(cell) }))));
  const name = path.split("/").pop().replace(/\.json$/, "") || "result";
  panel.replaceChildren(
    h("div.toolbar", {},
      h("output", { id: "result-count", text: `${total} rows${truncated}` }),
      h("button", { type: "button", disabled: page <= 1, onclick: () => showSet(panel, path, page - 1) }, "Previous page"),
      h("output", { id: "result-page", text: `page ${page} of ${pages}` }),
      h("button", { type: "button", disabled: page >= pages, onclick: () => showSet(panel, path, page + 1) }, "Next page"),
      h("button", { type: "button", id: "result-csv", onclick: () =>
        download(`/api/rest_j/v1/filesystem/resultsetToExcel?path=${encodeURIComponent(path)}&outputFileType=csv&outputFileName=${name}`, `${name}.csv`)
          .catch((err) => alert(err.message)) }, "Download CSV")),
    h("div.grid-wrap", {}, h("table.grid", { id: "result-grid" }, h("thead", {}, head), h("tbody", {}, body))));
}
