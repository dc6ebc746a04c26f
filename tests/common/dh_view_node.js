// Valgrind's DHAT viewer (`dh_view.js`, the script of `dh_view.html`) run under Node.js
// on one DHAT file, with the little of the DOM the viewer uses stubbed in.
//
//   node dh_view_node.js /usr/libexec/valgrind/dh_view.js file.dhat.json
//
// Does what the page does when a file is loaded (`onLoad`, then `loadFile`'s steps after
// the read: `buildTree`, `displayTree`), then redisplays the tree for every sort metric
// the file enables, and prints the text the page would show, one block per metric. An
// exception in the viewer (a missing field, a repeated location, a failed assertion)
// exits non-zero with its message, as the page would show it in red.
"use strict";

const fs = require("fs");
const vm = require("vm");

class ClassList {
  constructor(el) {
    this.el = el;
  }
  names() {
    return this.el.className.split(/\s+/).filter((s) => s.length > 0);
  }
  contains(n) {
    return this.names().includes(n);
  }
  add(n) {
    if (!this.contains(n)) this.el.className = this.names().concat([n]).join(" ");
  }
  remove(n) {
    this.el.className = this.names().filter((m) => m !== n).join(" ");
  }
  toggle(n) {
    if (this.contains(n)) this.remove(n);
    else this.add(n);
  }
}

class Text {
  constructor(text) {
    this.nodeType = 3;
    this.data = String(text);
    this.parentNode = null;
  }
  get textContent() {
    return this.data;
  }
  set textContent(v) {
    this.data = String(v);
  }
}

class Element {
  constructor(tag) {
    this.nodeType = 1;
    this.tagName = tag.toUpperCase();
    this.childNodes = [];
    this.parentNode = null;
    this.className = "";
    this.classList = new ClassList(this);
    this.style = {};
    this.selected = false;
    this.disabled = false;
  }
  appendChild(c) {
    if (c.parentNode) c.parentNode.removeChild(c);
    c.parentNode = this;
    this.childNodes.push(c);
    return c;
  }
  removeChild(c) {
    const i = this.childNodes.indexOf(c);
    if (i < 0) throw new Error("removeChild: not a child");
    this.childNodes.splice(i, 1);
    c.parentNode = null;
    return c;
  }
  replaceChild(n, old) {
    const i = this.childNodes.indexOf(old);
    if (i < 0) throw new Error("replaceChild: not a child");
    if (n.parentNode) n.parentNode.removeChild(n);
    this.childNodes[i] = n;
    n.parentNode = this;
    old.parentNode = null;
    return old;
  }
  cloneNode(deep) {
    const e = new Element(this.tagName);
    e.className = this.className;
    if (deep) for (const c of this.childNodes) e.appendChild(c.cloneNode ? c.cloneNode(true) : new Text(c.data));
    return e;
  }
  get nextSibling() {
    if (!this.parentNode) return null;
    const s = this.parentNode.childNodes;
    return s[s.indexOf(this) + 1] || null;
  }
  get firstChild() {
    return this.childNodes[0] || null;
  }
  get textContent() {
    return this.childNodes.map((c) => c.textContent).join("");
  }
  set textContent(v) {
    for (const c of this.childNodes) c.parentNode = null;
    this.childNodes = [];
    this.appendChild(new Text(v));
  }
  // <select>: the index of the selected <option>.
  get selectedIndex() {
    const i = this.childNodes.findIndex((o) => o.selected);
    return i < 0 ? 0 : i;
  }
  set selectedIndex(i) {
    this.childNodes.forEach((o, j) => (o.selected = j === i));
  }
  // What an error shown by `tryFunc` looks like: a span of class "error".
  errors() {
    const own = this.classList.contains("error") ? [this.textContent] : [];
    return own.concat(...this.childNodes.filter((c) => c.nodeType === 1).map((c) => c.errors()));
  }
}

const [viewerPath, dataPath] = process.argv.slice(2);
if (!viewerPath || !dataPath) {
  console.error("usage: node dh_view_node.js <dh_view.js> <file.dhat.json>");
  process.exit(2);
}

const document = {
  title: "",
  body: new Element("body"),
  location: { search: "" },
  createElement: (tag) => new Element(tag),
  createTextNode: (text) => new Text(text),
};
const context = vm.createContext({
  document,
  performance,
  Intl,
  URLSearchParams,
  console,
  DATA: JSON.parse(fs.readFileSync(dataPath, "utf8")),
});

vm.runInContext(fs.readFileSync(viewerPath, "utf8"), context, { filename: viewerPath });
const shown = vm.runInContext(
  `
  onLoad();
  gFilename = "leakscope";
  tryFunc(() => {
    gData = DATA;
    buildTree();
    displayTree();
  });
  const out = [];
  for (let i = 0; i < gSelect.childNodes.length; i++) {
    const option = gSelect.childNodes[i];
    if (option.disabled) continue;
    gSelect.selectedIndex = i;
    tryFunc(() => displayTree());
    out.push("== sort metric: " + option.label + "\\n" + gMainDiv.textContent);
  }
  const errors = document.body.errors();
  if (errors.length > 0) throw new Error("the viewer shows an error: " + errors.join("; "));
  out.join("\\n");
  `,
  context,
  { filename: "dh_view_node.js (page script)" },
);
process.stdout.write(shown + "\n");
