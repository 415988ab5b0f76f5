/* The batch view's pages, drawn from the JSON routes under <root>/api (batch_view/app.py).
 *
 * Pages: "batches" (the batches the user may read), "batch" (progress per backend, the map of tiles, the rows),
 * "row" (one row and its job), "job" (a task instance whose row is not in a job table). Text from the job table
 * is always inserted as text, never as HTML. Links to Airflow's own pages open in the Airflow UI around the view
 * when it is shown inside it (an external view is an iframe), else in this window. */
(function () {
  "use strict";

  var data = document.body.dataset;
  var ROOT = data.root;
  var AIRFLOW = data.airflowRoot || "";
  var REFRESH_MS = 5000;
  var COLORS = {
    not_started: "#a0aec0", queued_for_start: "#90cdf4", created: "#63b3ed", queued: "#808080",
    running: "#32cd32", finished: "#008000", error: "#e53e3e", start_failed: "#dd6b20",
    canceled: "#d69e2e", skipped: "#ed64a6"
  };
  var view = document.getElementById("view");
  function show() {  // the page's content; absent parts (null) are left out, not shown as "null"
    view.replaceChildren.apply(view, Array.prototype.filter.call(arguments, function (node) { return node !== null && node !== undefined; }));
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "onclick" || key === "oninput" || key === "onchange") node[key] = value;
      else node.setAttribute(key, value === true ? "" : value);
    });
    (children || []).forEach(function (child) {
      if (child !== null && child !== undefined) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }
  function enc(value) { return encodeURIComponent(String(value)); }
  function color(status) { return COLORS[status] || "#4a5568"; }
  function badge(status) {
    return el("span", { "class": "badge", style: "background:" + color(status), "data-status": status, text: status });
  }
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "unknown (no job finished yet)";
    seconds = Math.round(seconds);
    if (seconds < 90) return seconds + " s";
    var minutes = Math.round(seconds / 60);
    if (minutes < 90) return minutes + " min";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }
  function bar(part, statuses) {
    var node = el("div", { "class": "bar", title: "" });
    var order = statuses.concat(Object.keys(part.counts).filter(function (s) { return statuses.indexOf(s) < 0; }));
    order.forEach(function (status) {
      var n = part.counts[status] || 0;
      if (!n || !part.rows) return;
      node.appendChild(el("span", { style: "width:" + (100 * n / part.rows) + "%;background:" + color(status), title: status + ": " + n }));
    });
    return node;
  }
  function batchUrl(dagId, table) { return ROOT + "/batches/" + enc(dagId) + "/" + enc(table); }
  function rowUrl(dagId, table, rowId) { return batchUrl(dagId, table) + "/rows/" + enc(rowId); }
  function tiUrl(ti) {
    return AIRFLOW + "/dags/" + enc(ti.dag_id) + "/runs/" + enc(ti.run_id) + "/tasks/" + enc(ti.task_id) + "/mapped/" + ti.map_index;
  }
  /* A link to a page of the Airflow UI: inside the UI (we are its iframe, same origin) the UI's router shows it,
   * so the page opens around the view rather than inside it. */
  function airflowLink(href, text, testid) {
    return el("a", {
      href: href, text: text, "data-testid": testid, onclick: function (event) {
        try {
          if (window.top !== window && window.top.location.origin === window.location.origin) {
            event.preventDefault();
            window.top.history.pushState({}, "", href);
            window.top.dispatchEvent(new PopStateEvent("popstate", { state: {} }));
          }
        } catch (ignored) { /* not the UI around us: follow the link */ }
      }
    });
  }
  function getJson(path) {
    return fetch(ROOT + path, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (answer) {
      return answer.json().catch(function () { return {}; }).then(function (body) {
        if (!answer.ok) throw new Error((body && body.detail) || ("HTTP " + answer.status));
        return body;
      });
    });
  }
  function fail(error) {
    show(el("p", { "class": "error", "data-testid": "view-error", text: String(error.message || error) }));
  }

  // -- the batches --------------------------------------------------------------------------------------------

  function showBatches() {
    var query = data.dagId ? "?dag_id=" + enc(data.dagId) : "";
    getJson("/api/batches" + query).then(function (answer) {
      var batches = answer.batches;
      if (data.dagId && batches.length === 1) {
        window.location.replace(batchUrl(batches[0].dag_id, batches[0].table));
        return;
      }
      var rows = batches.map(function (b) {
        var p = b.progress;
        return el("tr", { "data-testid": "batch-" + b.dag_id + "-" + b.table }, [
          el("td", {}, [airflowLink(AIRFLOW + "/dags/" + enc(b.dag_id), b.dag_id)]),
          el("td", {}, [el("a", { href: batchUrl(b.dag_id, b.table), text: b.table })]),
          el("td", { text: b.backends.map(function (x) { return x.name; }).join(", ") }),
          el("td", {}, [p ? bar(p, Object.keys(COLORS)) : el("span", { "class": "muted", text: b.error || "not run yet" })]),
          el("td", { "class": "num", text: p ? p.done + " / " + p.rows : "" })
        ]);
      });
      show(
        el("h1", { text: "openEO batches" }),
        el("p", { "class": "muted", text: "One job table per batch, of the DAGs you may read." }),
        batches.length ? el("table", {}, [
          el("thead", {}, [el("tr", {}, [el("th", { text: "DAG" }), el("th", { text: "Job table" }), el("th", { text: "Backends" }),
            el("th", { text: "Progress" }), el("th", { "class": "num", text: "Rows done" })])]),
          el("tbody", {}, rows)
        ]) : el("p", { "data-testid": "no-batches", text: data.dagId ? "DAG " + data.dagId + " runs no openEO batch." : "No openEO batch in the DAGs you may read." })
      );
    }).catch(fail);
  }

  // -- one batch ----------------------------------------------------------------------------------------------

  var state = { filters: { text: "", status: "", backend: "" }, map: null, layer: null, drawn: false };

  function backendTable(progress) {
    var statuses = progress.statuses.filter(function (s) {
      return Object.keys(progress.backends).some(function (b) { return progress.backends[b].counts[s]; }) || progress.total.counts[s];
    });
    var head = [el("th", { text: "Backend" }), el("th", { "class": "num", text: "Rows" })]
      .concat(statuses.map(function (s) { return el("th", { "class": "num" }, [badge(s)]); }))
      .concat([el("th", { text: "Progress" }), el("th", { "class": "num", text: "Slots" }), el("th", { "class": "num", text: "Job takes" }),
        el("th", { "class": "num", text: "Time left" })]);
    var body = Object.keys(progress.backends).map(function (name) {
      var p = progress.backends[name];
      return el("tr", { "data-testid": "backend-" + name }, [el("td", { text: name }), el("td", { "class": "num", "data-testid": "rows-" + name, text: String(p.rows) })]
        .concat(statuses.map(function (s) {
          return el("td", { "class": "num", "data-testid": "count-" + name + "-" + s, text: String(p.counts[s] || 0) });
        }))
        .concat([el("td", {}, [bar(p, progress.statuses)]), el("td", { "class": "num", text: p.slots === null ? "?" : String(p.slots) }),
          el("td", { "class": "num", text: p.pace_seconds === null ? "–" : duration(p.pace_seconds) }),
          el("td", { "class": "num", "data-testid": "eta-" + name, text: p.left ? duration(p.eta_seconds) : "done" })]));
    });
    return el("table", { "data-testid": "backends" }, [el("thead", {}, [el("tr", {}, head)]), el("tbody", {}, body)]);
  }

  function totals(progress) {
    var t = progress.total;
    var counts = Object.keys(t.counts).map(function (s) {
      return el("span", { "data-testid": "total-" + s }, [badge(s), " " + t.counts[s]]);
    });
    return el("div", { "class": "summary" }, [
      bar(t, progress.statuses),
      el("strong", { "data-testid": "total-done", text: t.done + " of " + t.rows + " rows done (" + t.percent_done + " %)" }),
      el("span", { "data-testid": "total-eta", text: "time left: " + (t.left ? "about " + duration(t.eta_seconds) : "none, the batch is through") }),
      el("span", {}, counts)
    ]);
  }

  function drawMap(answer) {
    var holder = document.getElementById("map-section");
    if (!answer.tiles || !answer.tiles.features.length) { holder.replaceChildren(); state.drawn = false; return; }
    if (!state.map) {
      holder.replaceChildren(el("h2", { text: "Tiles" }), el("div", { id: "map", "data-testid": "map" }), legend());
      state.map = L.map("map", { attributionControl: false, zoomSnap: 0.25 });
    }
    if (state.layer) state.map.removeLayer(state.layer);
    state.layer = L.geoJSON(answer.tiles, {
      style: function (feature) {
        var c = color(feature.properties.status);
        return { color: c, weight: 1, fillColor: c, fillOpacity: 0.6, className: "tile tile-" + feature.properties.status };
      },
      onEachFeature: function (feature, layer) {
        layer.bindTooltip(feature.properties.label + " · " + feature.properties.status + (feature.properties.backend_name ? " · " + feature.properties.backend_name : ""));
        layer.on("click", function () { window.location.href = rowUrl(data.dagId, data.table, feature.properties.row_id); });
      }
    }).addTo(state.map);
    if (!state.drawn) { state.map.fitBounds(state.layer.getBounds(), { padding: [20, 20] }); state.drawn = true; }
    document.getElementById("map").setAttribute("data-tiles", String(answer.tiles.features.length));
  }
  function legend() {
    return el("div", { "class": "legend" }, Object.keys(COLORS).map(function (s) {
      return el("span", {}, [el("i", { style: "background:" + color(s) }), s]);
    }));
  }

  function matches(row) {
    var f = state.filters;
    if (f.status && row.status !== f.status) return false;
    if (f.backend && (row.backend_name || "") !== f.backend) return false;
    if (!f.text) return true;
    var haystack = [row.label, row.id, row.error_message, row.backend_name, row.status].join(" ").toLowerCase();
    return haystack.indexOf(f.text.toLowerCase()) >= 0;
  }

  function rowsTable(answer) {
    var shown = answer.rows.filter(matches);
    var body = shown.map(function (row) {
      var ti = row.task_instance;
      return el("tr", { "data-testid": "row-" + row.row_id, "data-status": row.status }, [
        el("td", {}, [el("a", { href: rowUrl(data.dagId, data.table, row.row_id), text: row.label })]),
        el("td", {}, [badge(row.status)]),
        el("td", { text: row.backend_name || "" }),
        el("td", {}, [row.id ? el("a", { href: rowUrl(data.dagId, data.table, row.row_id), "data-testid": "job-" + row.row_id, text: row.id }) : null]),
        el("td", { text: row.start_time || "" }),
        el("td", { "class": "message error", text: row.error_message || "" }),
        el("td", {}, [ti ? airflowLink(tiUrl(ti), ti.task_id.split(".").slice(-2).join(".") + " [" + ti.map_index + "]", "ti-" + row.row_id) : null])
      ]);
    });
    return el("table", { "data-testid": "rows" }, [
      el("thead", {}, [el("tr", {}, ["Row", "Status", "Backend", "Job", "Started", "Error", "Task instance"].map(function (t) { return el("th", { text: t }); }))]),
      el("tbody", {}, body)
    ]);
  }

  function filters(answer) {
    var statuses = answer.progress.statuses;
    var backends = Object.keys(answer.progress.backends);
    function select(name, label, values) {
      return el("select", { "data-testid": "filter-" + name, "aria-label": label, onchange: function (e) { state.filters[name] = e.target.value; drawRows(state.answer); } },
        [el("option", { value: "", text: "every " + label })].concat(values.map(function (v) {
          return el("option", { value: v, text: v, selected: state.filters[name] === v });
        })));
    }
    return el("div", { "class": "filters" }, [
      el("input", { type: "search", placeholder: "search rows, job ids, errors", value: state.filters.text, "data-testid": "filter-text",
        oninput: function (e) { state.filters.text = e.target.value; drawRows(state.answer); } }),
      select("status", "status", statuses), select("backend", "backend", backends)
    ]);
  }
  function drawRows(answer) {
    var shown = answer.rows.filter(matches).length;
    document.getElementById("rows-count").textContent = shown + " of " + answer.rows.length + " rows";
    document.getElementById("rows-table").replaceChildren(rowsTable(answer));
  }

  function showBatch() {
    getJson("/api/batches/" + enc(data.dagId) + "/" + enc(data.table)).then(function (answer) {
      if (!document.getElementById("batch-head")) {
        show(
          el("div", { id: "batch-head" }), el("div", { id: "batch-progress" }), el("div", { id: "map-section" }),
          el("h2", { text: "Rows" }), el("div", { id: "rows-filters" }), el("p", { id: "rows-count", "class": "muted" }), el("div", { id: "rows-table" })
        );
      }
      var b = answer.batch;
      document.getElementById("batch-head").replaceChildren(
        el("p", {}, [el("a", { href: ROOT + "/batches", text: "openEO batches" }), " › ", airflowLink(AIRFLOW + "/dags/" + enc(b.dag_id), b.dag_id)]),
        el("h1", { "data-testid": "batch-title", text: "Batch " + b.table }),
        el("p", { "class": "muted", "data-testid": "updated", text: "job table " + b.table + " (" + b.job_db + "); backends " +
          b.backends.map(function (x) { return x.name + " (pool " + (x.pool || "?") + ")"; }).join(", ") + "; updated " + new Date(answer.generated_at * 1000).toLocaleTimeString() })
      );
      if (!answer.exists) {
        document.getElementById("batch-progress").replaceChildren(el("p", { "data-testid": "not-run", text: "The batch has not run yet: its job table does not exist." }));
        return;
      }
      document.getElementById("batch-progress").replaceChildren(totals(answer.progress), el("h2", { text: "Per backend" }), backendTable(answer.progress));
      drawMap(answer);
      state.answer = answer;
      var holder = document.getElementById("rows-filters");
      if (!holder.firstChild) holder.replaceChildren(filters(answer));  // once: typing in the search box goes on
      drawRows(answer);
      document.body.setAttribute("data-loaded", String(answer.generated_at));
      if (answer.progress.total.left) window.setTimeout(showBatch, REFRESH_MS);
    }).catch(fail);
  }

  // -- one row ------------------------------------------------------------------------------------------------

  function fields(values) {
    return el("dl", { "class": "fields" }, Object.keys(values).reduce(function (items, key) {
      var value = values[key];
      if (value === null || value === "" || (Array.isArray(value) && !value.length)) return items;
      var text = typeof value === "object" ? JSON.stringify(value, null, 2) : String(value);
      return items.concat([el("dt", { text: key }), el("dd", { "data-testid": "field-" + key, text: text })]);
    }, []));
  }

  function showRow() {
    getJson("/api/batches/" + enc(data.dagId) + "/" + enc(data.table) + "/rows/" + enc(data.rowId)).then(function (row) {
      var c = row.columns, ti = row.task_instance;
      var links = [];
      if (ti) links.push(airflowLink(tiUrl(ti), "task instance " + ti.task_id + " [" + ti.map_index + "] of run " + ti.run_id, "row-ti"));
      if (row.job_url) links.push(el("a", { href: row.job_url, target: "_blank", rel: "noopener noreferrer", "data-testid": "row-backend-job",
        text: "job " + c.id + " on backend " + (c.backend_name || "") + " (its JSON; the backend asks you to log in)" }));
      show(
        el("p", {}, [el("a", { href: ROOT + "/batches", text: "openEO batches" }), " › ", el("a", { href: batchUrl(data.dagId, data.table), text: data.table })]),
        el("h1", { "data-testid": "row-title" }, [row.label + " ", badge(c.status || "not_started")]),
        c.error_message ? el("p", { "class": "message error", "data-testid": "row-error", text: c.error_message }) : null,
        el("ul", {}, links.map(function (a) { return el("li", {}, [a]); })),
        el("h2", { text: "Job" }),
        fields({ id: c.id, backend_name: c.backend_name, status: c.status, backend_status: c.backend_status, start_time: c.start_time,
          running_start_time: c.running_start_time, updated_at: c.updated_at, attempt: c.attempt, results_state: c.results_state, costs: c.costs }),
        el("h2", { text: "Row" }),
        fields(c)
      );
    }).catch(fail);
  }

  function showJob() {
    show(
      el("h1", { text: "openEO job of " + data.taskId + " [" + data.mapIndex + "]" }),
      el("p", { text: "This task instance's job is not in a job table the batch view knows." }),
      data.jobUrl ? el("p", {}, [el("a", { href: data.jobUrl, target: "_blank", rel: "noopener noreferrer", text: data.jobUrl })]) : null,
      el("p", {}, [airflowLink(tiUrl({ dag_id: data.dagId, run_id: data.runId, task_id: data.taskId, map_index: data.mapIndex }), "the task instance")])
    );
  }

  ({ batches: showBatches, batch: showBatch, row: showRow, job: showJob }[data.page] || showBatches)();
})();
