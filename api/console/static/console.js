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
