"use strict";
(() => {
  const { api, setToken, ready, flash } = geoetl;
  const current = document.getElementById("current");
  const error = document.getElementById("signin-error");
  const show = (me) => {
    current.textContent = me.authenticated
      ? `Signed in as ${me.name}: role ${me.role}, clearance ${me.clearance}; you see ${me.sees.join(", ")} data.`
      : `You are browsing anonymously; you see ${(me.sees || []).join(", ") || "public"} data.`;
  };
  ready.then(async () => show(await api("/auth/whoami")));
  document.getElementById("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    const value = document.getElementById("token").value.trim();
    try {
      const me = await api("/auth/whoami", { headers: { Authorization: `Bearer ${value}` } });
      setToken(value);
      show(me);
      location.assign(geoetl.uiUrl("/jobs"));
    } catch (e) {
      error.textContent = `Sign-in refused: ${e.message}`;
      error.hidden = false;
    }
  });
  document.getElementById("signout").addEventListener("click", () => {
    setToken(null);
    flash("Signed out.");
    location.reload();
  });
})();
