// Workflow templates without sockets: the built-ins (fields, graphs that validate as plans),
// WORKFLOW_DIR loading (good files, each kind of bad file named with its problem, route
// collisions), filling img2img and txt2img-advanced, the OpenAPI document (every route, the
// txt2img input schema equal to the recipe's), the YAML form and the /docs files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/png.h"
#include "server/docs_assets.h"
#include "server/openapi.h"
#include "server/templates.h"
#include "server/txt2img.h"
#include "server/util.h"
#include "server/workflow_registry.h"
#include "service/workflow/plan.h"

namespace sd35::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A fresh folder under /tmp, removed with the object.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("sd35_tpl_" + make_uuid());
  TempDir() { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  void write(const std::string& rel, const std::string& text) const {
    fs::create_directories((path / rel).parent_path());
    std::ofstream(path / rel, std::ios::binary) << text;
  }
};

// [[node, input], ...] (a braced list of pairs would become a JSON object).
json targets(std::initializer_list<std::pair<const char*, const char*>> list) {
  json out = json::array();
  for (const auto& [node, input] : list) out.push_back(json::array({node, input}));
  return out;
}

// A small valid template: two fields, one of them set in two places.
json good_template() {
  json t = {{"summary", "tiny"},
            {"description", "a test template"},
            {"fields",
             {{{"name", "prompt"}, {"type", "string"}, {"required", true}, {"targets", targets({{"6", "text"}})}},
              {{"name", "size"}, {"type", "integer"}, {"minimum", 64}, {"maximum", 512},
               {"default", 128}, {"targets", targets({{"135", "width"}, {"135", "height"}})}},
              {{"name", "hires"}, {"type", "boolean"}, {"default", false}, {"targets", targets({{"9", "flag"}})}}}},
            {"graph", recipe_graph()}};
  t["graph"]["9"] = {{"class_type", "Whatever"}, {"inputs", {{"flag", false}}}};
  return t;
}

WorkflowRegistry load_builtins(bool demo = false) {
  WorkflowRegistry r;
  std::vector<TemplateProblem> problems;
  std::vector<std::string> notes;
  std::string error;
  EXPECT_TRUE(r.load({}, RegistryOptions{.workflow_dir = "", .demo = demo}, &problems, &notes, &error)) << error;
  EXPECT_TRUE(problems.empty());
  return r;
}

TEST(WorkflowTemplates, BuiltinsAndAliases) {
  const WorkflowRegistry r = load_builtins();
  for (const char* route : {"/workflow/sd3.5-medium/txt2img", "/workflow/txt2img",
                            "/workflow/sd3.5-medium/img2img", "/workflow/img2img",
                            "/workflow/sd3.5-medium/txt2img-advanced", "/workflow/txt2img-advanced"})
    EXPECT_NE(r.find(route), nullptr) << route;
  EXPECT_EQ(r.find("/workflow/txt2img"), r.find("/workflow/sd3.5-medium/txt2img"));
  EXPECT_EQ(r.find("/workflow/nope"), nullptr);
  EXPECT_EQ(r.find("/workflow/sd3.5-medium/txt2img/"), nullptr);
  EXPECT_EQ(r.templates().size(), 3u);
  // The registry's txt2img is the recipe's.
  EXPECT_EQ(r.find("/workflow/txt2img")->graph, recipe_graph());
}

TEST(WorkflowTemplates, DemoDefaultsTo256ForEveryTemplateWithASize) {
  const WorkflowRegistry r = load_builtins(true);
  for (const char* route : {"/workflow/txt2img", "/workflow/txt2img-advanced"}) {
    json resolved;
    TemplateError err;
    auto g = fill_template(*r.find(route), {{"prompt", "x"}}, &resolved, &err);
    ASSERT_TRUE(g) << err.message;
    EXPECT_EQ(resolved["width"], 256) << route;
    EXPECT_EQ((*g)["135"]["inputs"]["height"], 256) << route;
  }
}

// Every built-in, filled with its defaults, is a graph the workflow library accepts.
TEST(WorkflowTemplates, FilledBuiltinsAreValidPlans) {
  TempDir models;
  for (const char* f : {"checkpoints/sd3.5_medium.safetensors", "text_encoders/clip_g.safetensors",
                        "text_encoders/clip_l.safetensors",
                        "text_encoders/t5xxl_fp8_e4m3fn.safetensors"})
    models.write(f, "");
  auto img = Tensor::zeros({1, 64, 64, 3}, DType::kU8);
  ASSERT_TRUE(img.ok());
  ASSERT_TRUE(write_png((models.path / "in.png").string(), *img).ok());
  workflow::WorkflowOptions wo;
  wo.models_dir = models.path.string();
  wo.input_dir = models.path.string();
  const WorkflowRegistry r = load_builtins();
  for (const auto& t : r.templates()) {
    json input = {{"prompt", "a cat"}};
    if (t->route.find("img2img") != std::string::npos) {
      input["image"] = "in.png";
    }
    json resolved;
    TemplateError err;
    auto g = fill_template(*t, input, &resolved, &err);
    ASSERT_TRUE(g) << t->route << ": " << err.message;
    workflow::WorkflowError werr;
    auto plan = workflow::parse_workflow(g->dump(), wo, &werr);
    EXPECT_TRUE(plan.ok()) << t->route << ": " << werr.to_string();
  }
}

TEST(WorkflowTemplates, Img2ImgFill) {
  const WorkflowRegistry r = load_builtins();
  const WorkflowTemplate& t = *r.find("/workflow/img2img");
  json resolved;
  TemplateError err;
  EXPECT_FALSE(fill_template(t, {{"prompt", "p"}}, &resolved, &err));
  EXPECT_EQ(err.field, "image");
  auto g = fill_template(t,
                         {{"image", "data:image/png;base64,iVBORw0KGgo="}, {"prompt", "p"},
                          {"negative_prompt", "blurry"}, {"seed", 5}, {"steps", 8}},
                         &resolved, &err);
  ASSERT_TRUE(g) << err.message;
  const json& graph = *g;
  EXPECT_EQ(graph["10"]["class_type"], "LoadImage");
  EXPECT_EQ(graph["10"]["inputs"]["image"], "data:image/png;base64,iVBORw0KGgo=");
  EXPECT_EQ(graph["12"]["class_type"], "VAEEncode");
  EXPECT_EQ(graph["12"]["inputs"]["pixels"], json::array({"10", 0}));
  EXPECT_EQ(graph["294"]["inputs"]["latent_image"], json::array({"12", 0}));
  EXPECT_EQ(graph["294"]["inputs"]["denoise"], 0.75);
  EXPECT_EQ(graph["294"]["inputs"]["seed"], 5);
  EXPECT_EQ(graph["294"]["inputs"]["steps"], 8);
  EXPECT_EQ(graph["6"]["inputs"]["text"], "p");
  EXPECT_EQ(graph["71"]["inputs"]["text"], "blurry");
  EXPECT_EQ(graph["8"]["inputs"]["samples"], json::array({"294", 0}));
  EXPECT_EQ(graph["301"]["inputs"]["images"], json::array({"8", 0}));
  // The recipe's text-encoder and negative-conditioning setup.
  for (const char* id : {"11", "13", "67", "68", "69", "70"}) EXPECT_EQ(graph[id], recipe_graph()[id]);
  for (auto it = graph.begin(); it != graph.end(); ++it)
    EXPECT_NE(it.value()["class_type"], "EmptySD3LatentImage");
  EXPECT_EQ(resolved["denoise"], 0.75);
  EXPECT_FALSE(fill_template(t, {{"image", "x"}, {"prompt", "p"}, {"width", 256}}, &resolved, &err));
  EXPECT_EQ(err.field, "width");
}

TEST(WorkflowTemplates, Txt2ImgAdvancedFill) {
  const WorkflowRegistry r = load_builtins();
  const WorkflowTemplate& t = *r.find("/workflow/txt2img-advanced");
  json resolved;
  TemplateError err;
  auto g = fill_template(t,
                         {{"prompt", "p"}, {"negative_prompt", "n"}, {"batch_size", 3},
                          {"slg_layers", "1,2"}, {"slg_scale", 2.5}, {"slg_start_percent", 0.05},
                          {"slg_end_percent", 0.3}, {"shift", 6}, {"seed", 9}},
                         &resolved, &err);
  ASSERT_TRUE(g) << err.message;
  const json& graph = *g;
  EXPECT_EQ(graph["135"]["inputs"]["batch_size"], 3);
  EXPECT_EQ(graph["71"]["inputs"]["text"], "n");
  EXPECT_EQ(graph["300"]["class_type"], "SkipLayerGuidanceSD3");
  EXPECT_EQ(graph["300"]["inputs"]["layers"], "1,2");
  EXPECT_EQ(graph["300"]["inputs"]["scale"], 2.5);
  EXPECT_EQ(graph["300"]["inputs"]["start_percent"], 0.05);
  EXPECT_EQ(graph["300"]["inputs"]["end_percent"], 0.3);
  EXPECT_EQ(graph["300"]["inputs"]["model"], json::array({"13", 0}));
  EXPECT_EQ(graph["294"]["inputs"]["model"], json::array({"300", 0}));
  EXPECT_EQ(graph["13"]["inputs"]["shift"], 6);
  // Defaults: the txt2img ones plus SD3.5 Medium's recommended skip-layer guidance.
  g = fill_template(t, {{"prompt", "p"}}, &resolved, &err);
  ASSERT_TRUE(g) << err.message;
  EXPECT_EQ(resolved["negative_prompt"], "");
  EXPECT_EQ(resolved["batch_size"], 1);
  EXPECT_EQ(resolved["slg_layers"], "7, 8, 9");
  EXPECT_EQ(resolved["slg_scale"], 3);
  EXPECT_EQ(resolved["shift"], 3);
  EXPECT_EQ(resolved["steps"], 20);
  EXPECT_EQ(resolved["cfg_scale"], 4.5);
  for (const auto& [bad, field] : std::vector<std::pair<json, std::string>>{
           {{{"prompt", "p"}, {"batch_size", 0}}, "batch_size"},
           {{{"prompt", "p"}, {"batch_size", 17}}, "batch_size"},
           {{{"prompt", "p"}, {"slg_scale", 11}}, "slg_scale"},
           {{{"prompt", "p"}, {"slg_layers", 7}}, "slg_layers"},
           {{{"prompt", "p"}, {"slg_end_percent", 1.5}}, "slg_end_percent"}}) {
    EXPECT_FALSE(fill_template(t, bad, &resolved, &err)) << bad.dump();
    EXPECT_EQ(err.field, field);
  }
  EXPECT_EQ(field_for(t, "300", "layers"), "slg_layers");
}

TEST(WorkflowTemplates, GoodTemplateFromWorkflowDir) {
  TempDir dir;
  dir.write("sub/tiny.json", good_template().dump());
  dir.write("notes.txt", "not a template");
  dir.write("legacy.ts", "export default {}");
  dir.write(".hidden/x.json", "{");
  WorkflowRegistry r;
  std::vector<TemplateProblem> problems;
  std::vector<std::string> notes;
  std::string error;
  ASSERT_TRUE(r.load({}, RegistryOptions{.workflow_dir = dir.path.string()}, &problems, &notes, &error));
  EXPECT_TRUE(problems.empty()) << problems[0].file << ": " << problems[0].message;
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("legacy.ts"), std::string::npos);
  const WorkflowTemplate* t = r.find("/workflow/sub/tiny");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->summary, "tiny");
  EXPECT_EQ(t->source, (dir.path / "sub/tiny.json").string());
  json resolved;
  TemplateError err;
  auto g = fill_template(*t, {{"prompt", "x"}, {"size", 256}, {"hires", true}}, &resolved, &err);
  ASSERT_TRUE(g) << err.message;
  EXPECT_EQ((*g)["135"]["inputs"]["width"], 256);
  EXPECT_EQ((*g)["135"]["inputs"]["height"], 256);
  EXPECT_EQ((*g)["9"]["inputs"]["flag"], true);
  EXPECT_FALSE(fill_template(*t, {{"prompt", "x"}, {"hires", 1}}, &resolved, &err));
  EXPECT_EQ(err.field, "hires");
  EXPECT_EQ(field_for(*t, "135", "height"), "size");
}

TEST(WorkflowTemplates, BadTemplatesAreNamedAndSkipped) {
  struct Case {
    std::string file;
    std::function<void(json&)> edit;
    std::string expect;  // in the message
  };
  const std::vector<Case> cases = {
      {"syntax.json", nullptr, "not valid JSON"},
      {"topkey.json", [](json& t) { t["field"] = json::array(); }, "unknown key 'field'"},
      {"nograph.json", [](json& t) { t.erase("graph"); }, "graph"},
      {"nooutput.json", [](json& t) { t["graph"].erase("301"); }, "no output node"},
      {"badnode.json", [](json& t) { t["graph"]["7"] = {{"inputs", json::object()}}; }, "graph node \"7\""},
      {"nonode.json", [](json& t) { t["fields"][0]["targets"] = targets({{"999", "text"}}); },
       "fields[0] (prompt): target node \"999\" is not in the graph"},
      {"noinput.json", [](json& t) { t["fields"][0]["targets"] = targets({{"6", "txt"}}); },
       "fields[0] (prompt): target input \"txt\" is not an input of node 6"},
      {"link.json", [](json& t) { t["fields"][0]["targets"] = targets({{"6", "clip"}}); }, "is a link"},
      {"dupname.json", [](json& t) { t["fields"][1]["name"] = "prompt"; }, "used twice"},
      {"duptarget.json", [](json& t) { t["fields"][1]["targets"] = targets({{"6", "text"}}); },
       "already set by field prompt"},
      {"range.json", [](json& t) { t["fields"][1]["default"] = 1024; },
       "fields[1] (size): default 1024: must be between 64 and 512"},
      {"minmax.json", [](json& t) { t["fields"][1]["minimum"] = 1000; }, "is above maximum"},
      {"enum.json",
       [](json& t) {
         t["fields"][0] = {{"name", "s"}, {"type", "string"}, {"enum", {"a", "b"}},
                           {"default", "c"}, {"targets", targets({{"6", "text"}})}};
       },
       "fields[0] (s): default \"c\": must be one of: a, b"},
      {"reqdefault.json", [](json& t) { t["fields"][0]["default"] = "x"; }, "a required field has no default"},
      {"nodefault.json", [](json& t) { t["fields"][1].erase("default"); }, "needs a default"},
      {"type.json", [](json& t) { t["fields"][1]["type"] = "int"; }, "type must be"},
      {"fieldkey.json", [](json& t) { t["fields"][1]["max"] = 3; }, "unknown key 'max'"},
      {"name.json", [](json& t) { t["fields"][1]["name"] = "two words"; }, "name must be"},
      {"enumfrom.json", [](json& t) { t["fields"][0]["enum_from"] = "loras"; }, "enum_from must be"},
      {"random.json", [](json& t) { t["fields"][0]["random"] = true; }, "random is only for integer"},
      {"txt2img.json", nullptr, "route /workflow/txt2img is already served by built-in"},
      {"bad name.json", nullptr, "route part"},
  };
  TempDir dir;
  for (const auto& c : cases) {
    json t = good_template();
    if (c.edit) c.edit(t);
    dir.write(c.file, c.file == "syntax.json" ? std::string("{\"fields\": [") : t.dump());
  }
  dir.write("ok.json", good_template().dump());
  WorkflowRegistry r;
  std::vector<TemplateProblem> problems;
  std::vector<std::string> notes;
  std::string error;
  ASSERT_TRUE(r.load({}, RegistryOptions{.workflow_dir = dir.path.string()}, &problems, &notes, &error));
  EXPECT_NE(r.find("/workflow/ok"), nullptr);  // a bad file costs only itself
  EXPECT_EQ(r.templates().size(), 4u);
  for (const auto& c : cases) {
    const std::string file = (dir.path / c.file).string();
    auto it = std::find_if(problems.begin(), problems.end(),
                           [&](const TemplateProblem& p) { return p.file == file; });
    ASSERT_NE(it, problems.end()) << c.file << " was not reported";
    EXPECT_NE(it->message.find(c.expect), std::string::npos) << c.file << ": " << it->message;
  }
  EXPECT_EQ(problems.size(), cases.size());
}

TEST(WorkflowTemplates, MissingWorkflowDirStopsTheStart) {
  WorkflowRegistry r;
  std::vector<TemplateProblem> problems;
  std::vector<std::string> notes;
  std::string error;
  EXPECT_FALSE(r.load({}, RegistryOptions{.workflow_dir = "/nonexistent/sd35/workflows"},
                      &problems, &notes, &error));
  EXPECT_NE(error.find("/nonexistent/sd35/workflows"), std::string::npos) << error;
}

TEST(WorkflowTemplates, ChoicesFromModelsIncludeTheDefault) {
  TemplateContext ctx;
  ctx.models["checkpoints"] = {"a.safetensors", "sd3.5_medium.safetensors"};
  WorkflowRegistry r;
  std::vector<TemplateProblem> problems;
  std::vector<std::string> notes;
  std::string error;
  ASSERT_TRUE(r.load(ctx, {}, &problems, &notes, &error));
  const auto& f = r.find("/workflow/txt2img")->fields.back();
  EXPECT_EQ(f.name, "checkpoint");
  EXPECT_EQ(f.choices, (std::vector<json>{"a.safetensors", "sd3.5_medium.safetensors"}));
  EXPECT_EQ(sd35_txt2img_template({"b.safetensors"}).fields.back().choices,
            (std::vector<json>{"sd3.5_medium.safetensors", "b.safetensors"}));
}

json openapi_of(const WorkflowRegistry& r, bool markdown = true, bool api_key = false) {
  OpenApiOptions o;
  o.version = "9.9.9";
  o.port = 3456;
  o.markdown_descriptions = markdown;
  o.api_key = api_key;
  o.model_types = {"checkpoints", "text_encoders"};
  return build_openapi(o, r.templates());
}

TEST(OpenApi, EveryRouteIsDocumented) {
  const WorkflowRegistry r = load_builtins();
  const json doc = openapi_of(r);
  EXPECT_EQ(doc["openapi"].get<std::string>().substr(0, 4), "3.0.");
  EXPECT_EQ(doc["info"]["title"], "ComfyUI API");
  EXPECT_EQ(doc["info"]["version"], "9.9.9");
  EXPECT_EQ(doc["servers"][0]["url"], "{accessDomainName}");
  EXPECT_EQ(doc["servers"][0]["variables"]["accessDomainName"]["default"], "http://localhost:3456");
  const std::vector<std::pair<std::string, std::string>> routes = {
      {"/health", "get"}, {"/ready", "get"}, {"/models", "get"}, {"/prompt", "post"},
      {"/interrupt", "post"}, {"/workflow/sd3.5-medium/txt2img", "post"},
      {"/workflow/txt2img", "post"}, {"/workflow/sd3.5-medium/img2img", "post"},
      {"/workflow/img2img", "post"}, {"/workflow/sd3.5-medium/txt2img-advanced", "post"},
      {"/workflow/txt2img-advanced", "post"}};
  EXPECT_EQ(doc["paths"].size(), routes.size());
  for (const auto& [path, method] : routes) {
    ASSERT_TRUE(doc["paths"].contains(path)) << path;
    const json& op = doc["paths"][path][method];
    EXPECT_TRUE(op.contains("summary")) << path;
    EXPECT_TRUE(op["responses"].contains("200")) << path;
    EXPECT_FALSE(op.contains("security")) << path;  // no API_KEY
  }
  EXPECT_TRUE(doc["paths"]["/health"]["get"]["responses"].contains("500"));
  EXPECT_TRUE(doc["paths"]["/ready"]["get"]["responses"].contains("503"));
  EXPECT_TRUE(doc["paths"]["/interrupt"]["post"]["responses"].contains("404"));
  const json& prompt = doc["paths"]["/prompt"]["post"];
  for (const char* code : {"202", "400", "409", "413", "415", "429", "500", "503"})
    EXPECT_TRUE(prompt["responses"].contains(code)) << code;
  const json& body = prompt["requestBody"]["content"]["application/json"];
  for (const char* key : {"prompt", "id", "webhook", "webhook_v2", "convert_output"})
    EXPECT_TRUE(body["schema"]["properties"].contains(key)) << key;
  EXPECT_EQ(body["schema"]["required"], json::array({"prompt"}));
  EXPECT_EQ(body["example"]["prompt"], recipe_graph());
  // Every $ref resolves.
  std::function<void(const json&)> refs = [&](const json& v) {
    if (v.is_object()) {
      if (v.contains("$ref")) {
        const std::string ref = v["$ref"];
        ASSERT_EQ(ref.rfind("#/components/schemas/", 0), 0u) << ref;
        EXPECT_TRUE(doc["components"]["schemas"].contains(ref.substr(21))) << ref;
      }
      for (const auto& [k, c] : v.items()) refs(c);
    } else if (v.is_array()) {
      for (const auto& c : v) refs(c);
    }
  };
  refs(doc);
}

TEST(OpenApi, Txt2ImgInputSchemaIsTheRecipes) {
  std::ifstream f(fs::path(SD35_TEST_DATA_DIR) / "workflows/sd35-medium-txt2img-input-schema.json");
  ASSERT_TRUE(f.good());
  const json recipe = json::parse(f);
  const WorkflowRegistry r = load_builtins();
  const json doc = openapi_of(r);
  for (const char* route : {"/workflow/sd3.5-medium/txt2img", "/workflow/txt2img"}) {
    const json& body = doc["paths"][route]["post"]["requestBody"]["content"]["application/json"];
    const json& ours = body["schema"]["properties"]["input"];
    EXPECT_EQ(ours["type"], "object");
    EXPECT_EQ(ours["required"], recipe["required"]);
    EXPECT_EQ(ours["additionalProperties"], false);
    std::vector<std::string> ours_names, recipe_names;
    for (const auto& [k, v] : ours["properties"].items()) ours_names.push_back(k);
    for (const auto& [k, v] : recipe["properties"].items()) recipe_names.push_back(k);
    EXPECT_EQ(ours_names, recipe_names);
    for (const auto& [name, want] : recipe["properties"].items()) {
      const json& got = ours["properties"][name];
      for (const char* key : {"type", "minimum", "maximum", "enum", "default"}) {
        if (name == "seed" && std::string(key) == "default") continue;  // random: not fixed
        EXPECT_EQ(got.value(key, json()), want.value(key, json())) << name << "." << key;
      }
      if (want.contains("description")) {
        const std::string d = got["description"];
        EXPECT_EQ(d.rfind(want["description"].get<std::string>(), 0), 0u) << name;
      }
    }
    EXPECT_EQ(body["example"]["input"]["prompt"], "a leafy green spaceship from the distant future");
    const json& resp = doc["paths"][route]["post"]["responses"];
    for (const char* code : {"200", "202", "400", "429", "500", "503"})
      EXPECT_TRUE(resp.contains(code)) << code;
  }
}

TEST(OpenApi, MarkdownTablesAndApiKey) {
  const WorkflowRegistry r = load_builtins();
  json doc = openapi_of(r, true);
  const std::string d = doc["paths"]["/workflow/txt2img-advanced"]["post"]["description"];
  EXPECT_NE(d.find("| Field | Type | Description | Default |"), std::string::npos);
  EXPECT_NE(d.find("| prompt | string |"), std::string::npos);
  EXPECT_NE(d.find("**Required**"), std::string::npos);
  EXPECT_NE(d.find("| slg_layers | string |"), std::string::npos);
  EXPECT_NE(d.find("Alias of `/workflow/sd3.5-medium/txt2img-advanced`"), std::string::npos);
  doc = openapi_of(r, false, true);
  const std::string plain = doc["paths"]["/workflow/sd3.5-medium/txt2img"]["post"]["description"];
  EXPECT_EQ(plain.find("| Field |"), std::string::npos);
  EXPECT_EQ(plain, r.find("/workflow/txt2img")->description);
  EXPECT_TRUE(doc["paths"]["/prompt"]["post"].contains("security"));
  EXPECT_TRUE(doc["paths"]["/prompt"]["post"]["responses"].contains("401"));
  EXPECT_FALSE(doc["paths"]["/health"]["get"].contains("security"));
  EXPECT_TRUE(doc["components"]["securitySchemes"].contains("bearer"));
}

TEST(OpenApi, Yaml) {
  const json v = {{"a", 1}, {"b", {{"c", "x: \"y\""}, {"d", json::array({1, "two", json::object()})}}},
                  {"e", json::array({{{"f", true}, {"g", nullptr}}})}, {"h", json::object()}};
  EXPECT_EQ(to_yaml(v),
            "\"a\": 1\n"
            "\"b\":\n"
            "  \"c\": \"x: \\\"y\\\"\"\n"
            "  \"d\":\n"
            "    - 1\n"
            "    - \"two\"\n"
            "    - {}\n"
            "\"e\":\n"
            "  - \"f\": true\n"
            "    \"g\": null\n"
            "\"h\": {}\n");
}

TEST(DocsAssets, PageAndFiles) {
  const DocsAsset* page = find_docs_asset("/docs");
  ASSERT_NE(page, nullptr);
  EXPECT_EQ(page, find_docs_asset("/docs/"));
  EXPECT_EQ(page->content_type, "text/html; charset=utf-8");
  EXPECT_NE(page->body.find("/docs/static/swagger-ui-bundle.js"), std::string::npos);
  const DocsAsset* js = find_docs_asset("/docs/static/swagger-ui-bundle.js");
  ASSERT_NE(js, nullptr);
  EXPECT_EQ(js->content_type, "text/javascript; charset=utf-8");
  EXPECT_GT(js->body.size(), 100000u);
  EXPECT_NE(js->cache_control.find("max-age"), std::string::npos);
  ASSERT_NE(find_docs_asset("/docs/static/swagger-ui.css"), nullptr);
  EXPECT_EQ(find_docs_asset("/docs/static/swagger-ui.css")->content_type, "text/css; charset=utf-8");
  ASSERT_NE(find_docs_asset("/docs/static/favicon-32x32.png"), nullptr);
  EXPECT_EQ(find_docs_asset("/docs/static/favicon-32x32.png")->content_type, "image/png");
  EXPECT_NE(find_docs_asset("/docs/static/sd35-docs.js"), nullptr);
  for (const char* bad : {"/docs/static/nope.js", "/docs/static/../index.html", "/docs/static/",
                          "/docsx", "/docs/static/index.html", "/static/swagger-ui.css"})
    EXPECT_EQ(find_docs_asset(bad), nullptr) << bad;
  EXPECT_TRUE(etag_matches(js->etag, js->etag));
  EXPECT_TRUE(etag_matches("\"x\", W/" + js->etag, js->etag));
  EXPECT_TRUE(etag_matches("*", js->etag));
  EXPECT_FALSE(etag_matches("", js->etag));
  EXPECT_FALSE(etag_matches("\"other\"", js->etag));
}

}  // namespace
}  // namespace sd35::server
