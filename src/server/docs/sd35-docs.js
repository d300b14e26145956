// Starts Swagger UI on the server's own OpenAPI document. A separate file rather than an
// inline script, so the page also works under a Content-Security-Policy without
// 'unsafe-inline'.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/docs/json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // The document is ours: no call to the public validator service.
    validatorUrl: null
  });
});
