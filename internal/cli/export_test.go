package cli

// Components exposes components to the external tests.
var Components = components
