// Herald console: the little behaviour htmx does not give by itself.
// A refreshing region (data-pause-on-focus: its only htmx request is its refresh) skips
// a refresh while keyboard focus is inside it, so tabbing through it is not interrupted.
document.addEventListener("htmx:beforeRequest", function (event) {
  var region = event.detail.elt;
  if (region && region.hasAttribute && region.hasAttribute("data-pause-on-focus") &&
      region.contains(document.activeElement)) {
    event.preventDefault();
  }
});

// A page answering a form that created something shown once (a key, a webhook secret):
// make its history entry a plain GET, so a reload shows the list again instead of
// posting the form a second time and creating a second one.
document.addEventListener("DOMContentLoaded", function () {
  if (document.querySelector("[data-new-key], [data-new-secret]")) {
    history.replaceState(null, "", location.href);
  }
});
