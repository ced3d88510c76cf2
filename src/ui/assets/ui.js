// Search as you type: the server renders the rows (escaped there), this
// only asks for them and puts them in place. Without JavaScript the form
// does the same with a page load.
"use strict";
(function () {
  const input = document.getElementById("search");
  const results = document.getElementById("results");
  if (input && results) {
    let timer = null;
    let asked = 0;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(async function () {
        const term = input.value;
        const mine = ++asked;
        // From the origin: a page opened as http://user:pw@host/ resolves
        // relative URLs with the login in them, which fetch refuses.
        const url = new URL(input.dataset.fragment, window.location.origin);
        url.searchParams.set("q", term);
        try {
          const answer = await fetch(url, { credentials: "same-origin" });
          if (!answer.ok || mine !== asked) return;
          const html = await answer.text();
          if (mine !== asked) return;
          results.innerHTML = html;
          const here = new URL(window.location.pathname + window.location.search, window.location.origin);
          here.searchParams.set("q", term);
          here.searchParams.delete("page");
          history.replaceState(null, "", here);
        } catch (e) {
          // The form still works.
        }
      }, 120);
    });
  }
  // A pull line is copied when clicked.
  for (const code of document.querySelectorAll("code.copy")) {
    code.title = "click to copy";
    code.addEventListener("click", function () {
      if (navigator.clipboard) navigator.clipboard.writeText(code.textContent);
    });
  }
})();
