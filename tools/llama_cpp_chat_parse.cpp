// llama.cpp's own chat-output parser as an oracle: reads a corpus (JSON on stdin), parses
// every case with common_chat_parse exactly as llama-server does, and writes the results
// (JSON on stdout). Built by `tools/llama_cpp.sh --chat`; run by `tools/fixture_parsers.py
// --llama-cpp` for the families whose vLLM parser cannot run here (gpt-oss: vLLM's harmony
// parser needs openai_harmony's vocabulary download).
//
// Input:  {"template": "<jinja source>", "tools": [OpenAI tools],
//          "cases": [{"id", "tokens": ["piece", …], "tool_choice": "auto|none|required",
//                     "offer_tools": true|false, "reasoning_format": "auto|none"}]}
// Output: {"cases": [{"id", "complete": MSG | {"error": TEXT},
//                     "streamed": MSG | {"error": TEXT}}]}
// where MSG = {"reasoning", "content", "tool_calls": [{"name", "arguments"}]} (empty strings as null).
//
// complete: common_chat_parse(text, is_partial=false) — the non-streamed answer.
// streamed: after every token, common_chat_parse(prefix, is_partial=true) (the last token with
// is_partial=false), diffs from common_chat_msg_diff::compute_diffs accumulated as
// llama-server's streaming client sees them (task_result_state::update_chat_msg).
#include "chat.h"

#include <nlohmann/json.hpp>

#include <iostream>
#include <iterator>
#include <string>

using json = nlohmann::ordered_json;

static json message_json(const common_chat_msg & msg) {
    json calls = json::array();
    for (const auto & call : msg.tool_calls) {
        calls.push_back({ { "name", call.name }, { "arguments", call.arguments } });
    }
    auto or_null = [](const std::string & s) { return s.empty() ? json(nullptr) : json(s); };
    return { { "reasoning", or_null(msg.reasoning_content) }, { "content", or_null(msg.content) }, { "tool_calls", calls } };
}

int main() {
    std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    json corpus = json::parse(input);
    common_chat_templates_ptr templates = common_chat_templates_init(nullptr, corpus.at("template").get<std::string>());
    std::vector<common_chat_tool> tools;
    for (const auto & tool : corpus.at("tools")) {
        const auto & function = tool.at("function");
        tools.push_back({ function.at("name").get<std::string>(), function.value("description", ""),
                          function.at("parameters").dump() });
    }

    json out_cases = json::array();
    for (const auto & c : corpus.at("cases")) {
        common_chat_templates_inputs inputs;
        common_chat_msg user;
        user.role = "user";
        user.content = "hi";
        inputs.messages = { user };
        std::string choice = c.value("tool_choice", "auto");
        if (c.value("offer_tools", true)) {
            inputs.tools = tools;
        }
        inputs.tool_choice = common_chat_tool_choice_parse_oaicompat(choice);
        inputs.reasoning_format = common_reasoning_format_from_name(c.value("reasoning_format", "auto"));
        common_chat_params params = common_chat_templates_apply(templates.get(), inputs);
        common_chat_parser_params parser_params(params);
        parser_params.reasoning_format = inputs.reasoning_format;
        parser_params.parser.load(params.parser);

        std::string text;
        for (const auto & t : c.at("tokens")) {
            text += t.get<std::string>();
        }
        json record = { { "id", c.at("id") } };
        try {
            record["complete"] = message_json(common_chat_parse(text, false, parser_params));
        } catch (const std::exception & e) {
            record["complete"] = { { "error", e.what() } };
        }

        common_chat_msg previous, accumulated;
        std::string prefix;
        const auto & tokens = c.at("tokens");
        try {
            for (size_t i = 0; i < tokens.size(); ++i) {
                prefix += tokens[i].get<std::string>();
                common_chat_msg current = common_chat_parse(prefix, i + 1 < tokens.size(), parser_params);
                if (current.empty()) {
                    continue;
                }
                for (const auto & diff : common_chat_msg_diff::compute_diffs(previous, current)) {
                    accumulated.reasoning_content += diff.reasoning_content_delta;
                    accumulated.content += diff.content_delta;
                    if (diff.tool_call_index != std::string::npos) {
                        while (accumulated.tool_calls.size() <= diff.tool_call_index) {
                            accumulated.tool_calls.push_back({ "", "", "" });
                        }
                        auto & slot = accumulated.tool_calls[diff.tool_call_index];
                        if (!diff.tool_call_delta.name.empty()) {
                            slot.name = diff.tool_call_delta.name;
                        }
                        slot.arguments += diff.tool_call_delta.arguments;
                    }
                }
                previous = current;
            }
            record["streamed"] = message_json(accumulated);
        } catch (const std::exception & e) {
            record["streamed"] = { { "error", e.what() } };
        }
        out_cases.push_back(record);
    }
    std::cout << json({ { "cases", out_cases } }).dump(1) << std::endl;
    return 0;
}
