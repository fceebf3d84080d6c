import Foundation

/// The OpenAPI 3.1 description of the coordinator's HTTP API, served at `/openapi.json`.
/// `OpenAPITests` keeps it equal to the routes the router registers and validates it with
/// openapi-spec-validator; edit it with the routes.
public enum OpenAPIDocument {
    /// The document as this server serves it: the request schemas name the one model it
    /// serves (`model` as an enum), bound token ids by its vocabulary and token counts by
    /// `--max-model-len`, so clients and fuzzers see the limits the server enforces.
    public static func served(modelName: String, vocabularySize: Int, maximumModelLength: Int, expertCount: Int? = nil) -> String {
        guard var document = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              var components = document["components"] as? [String: Any],
              var schemas = components["schemas"] as? [String: Any] else { return json }
        for (name, value) in schemas {
            guard var schema = value as? [String: Any], var properties = schema["properties"] as? [String: Any] else { continue }
            if var model = properties["model"] as? [String: Any] {
                model["enum"] = [modelName]
                properties["model"] = model
            }
            for key in ["max_tokens", "max_completion_tokens", "max_new_tokens"] {
                if var count = properties[key] as? [String: Any] {
                    count["maximum"] = maximumModelLength - 1
                    properties[key] = count
                }
            }
            if let expertCount, var experts = properties["experts_per_token"] as? [String: Any], let options = experts["oneOf"] as? [[String: Any]] {
                experts["oneOf"] = options.map { option in
                    var option = option
                    if option["type"] as? String == "integer" { option["maximum"] = expertCount }
                    return option
                }
                properties["experts_per_token"] = experts
            }
            for key in ["prompt", "prompt_ids"] {
                if let prompt = properties[key] { properties[key] = boundingTokenIDs(prompt, below: vocabularySize, atMost: maximumModelLength - 1) }
            }
            schema["properties"] = properties
            schemas[name] = schema
        }
        components["schemas"] = schemas
        document["components"] = components
        guard let data = try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys]) else { return json }
        return String(decoding: data, as: UTF8.self)
    }

    /// Arrays of integers (token ids) anywhere in `schema` get `maximum` and `maxItems`.
    private static func boundingTokenIDs(_ schema: Any, below vocabularySize: Int, atMost count: Int) -> Any {
        guard var object = schema as? [String: Any] else { return schema }
        if object["type"] as? String == "array", var items = object["items"] as? [String: Any], items["type"] as? String == "integer" {
            items["maximum"] = vocabularySize - 1
            items["minimum"] = 0
            object["items"] = items
            object["maxItems"] = count
        }
        if let options = object["oneOf"] as? [Any] { object["oneOf"] = options.map { boundingTokenIDs($0, below: vocabularySize, atMost: count) } }
        return object
    }

    public static let json: String = #"""
{
 "components": {
  "schemas": {
   "ChatCompletion": {
    "properties": {
     "choices": {
      "items": {
       "additionalProperties": true,
       "type": "object"
      },
      "type": "array"
     },
     "created": {
      "type": "integer"
     },
     "id": {
      "type": "string"
     },
     "model": {
      "type": "string"
     },
     "object": {
      "type": "string"
     },
     "usage": {
      "$ref": "#/components/schemas/Usage"
     }
    },
    "type": "object"
   },
   "ChatCompletionRequest": {
    "dependentSchemas": {
     "top_logprobs": {
      "properties": {
       "logprobs": {
        "const": true
       }
      },
      "required": [
       "logprobs"
      ]
     }
    },
    "properties": {
     "chat_template_kwargs": {
      "additionalProperties": true,
      "type": "object"
     },
     "experts_per_token": {
      "description": "Elastic experts: routed experts per token for this request (1\u2026the model's expert count, or auto).",
      "oneOf": [
       {
        "minimum": 1,
        "type": "integer"
       },
       {
        "enum": [
         "auto"
        ],
        "type": "string"
       }
      ]
     },
     "frequency_penalty": {
      "type": "number"
     },
     "guided_json": {
      "additionalProperties": true,
      "type": "object"
     },
     "ignore_eos": {
      "type": "boolean"
     },
     "include_reasoning": {
      "type": "boolean"
     },
     "logit_bias": {
      "additionalProperties": {
       "type": "number"
      },
      "type": "object"
     },
     "logprobs": {
      "type": "boolean"
     },
     "max_completion_tokens": {
      "minimum": 1,
      "type": "integer"
     },
     "max_tokens": {
      "minimum": 1,
      "type": "integer"
     },
     "messages": {
      "items": {
       "$ref": "#/components/schemas/ChatMessage"
      },
      "minItems": 1,
      "type": "array"
     },
     "min_p": {
      "maximum": 1,
      "minimum": 0,
      "type": "number"
     },
     "model": {
      "type": "string"
     },
     "n": {
      "maximum": 16,
      "minimum": 1,
      "type": "integer"
     },
     "parallel_tool_calls": {
      "type": "boolean"
     },
     "presence_penalty": {
      "type": "number"
     },
     "repetition_penalty": {
      "exclusiveMinimum": 0,
      "type": "number"
     },
     "response_format": {
      "additionalProperties": true,
      "type": "object"
     },
     "seed": {
      "type": "integer"
     },
     "skip_special_tokens": {
      "type": "boolean"
     },
     "speculative": {
      "description": "Per-request opt-out of the server's speculative decoding.",
      "type": "boolean"
     },
     "stop": {
      "oneOf": [
       {
        "type": "string"
       },
       {
        "items": {
         "type": "string"
        },
        "type": "array"
       }
      ]
     },
     "stream": {
      "type": "boolean"
     },
     "stream_options": {
      "properties": {
       "include_usage": {
        "type": "boolean"
       }
      },
      "type": "object"
     },
     "temperature": {
      "minimum": 0,
      "type": "number"
     },
     "tool_choice": {
      "oneOf": [
       {
        "enum": [
         "auto",
         "none",
         "required"
        ],
        "type": "string"
       },
       {
        "additionalProperties": true,
        "type": "object"
       }
      ]
     },
     "tools": {
      "items": {
       "additionalProperties": true,
       "type": "object"
      },
      "type": "array"
     },
     "top_k": {
      "minimum": 0,
      "type": "integer"
     },
     "top_logprobs": {
      "maximum": 20,
      "minimum": 0,
      "type": "integer"
     },
     "top_p": {
      "exclusiveMinimum": 0,
      "maximum": 1,
      "type": "number"
     }
    },
    "required": [
     "messages",
     "model"
    ],
    "type": "object"
   },
   "ChatMessage": {
    "properties": {
     "content": {
      "oneOf": [
       {
        "type": "string"
       },
       {
        "items": {
         "additionalProperties": true,
         "type": "object"
        },
        "type": "array"
       },
       {
        "type": "null"
       }
      ]
     },
     "name": {
      "type": "string"
     },
     "reasoning_content": {
      "type": "string"
     },
     "role": {
      "enum": [
       "system",
       "developer",
       "user",
       "assistant",
       "tool"
      ],
      "type": "string"
     },
     "tool_call_id": {
      "type": "string"
     },
     "tool_calls": {
      "items": {
       "additionalProperties": true,
       "type": "object"
      },
      "type": "array"
     }
    },
    "required": [
     "role"
    ],
    "type": "object"
   },
   "Completion": {
    "properties": {
     "choices": {
      "items": {
       "additionalProperties": true,
       "type": "object"
      },
      "type": "array"
     },
     "created": {
      "type": "integer"
     },
     "id": {
      "type": "string"
     },
     "model": {
      "type": "string"
     },
     "object": {
      "type": "string"
     },
     "usage": {
      "$ref": "#/components/schemas/Usage"
     }
    },
    "type": "object"
   },
   "CompletionRequest": {
    "properties": {
     "echo": {
      "const": false,
      "description": "Not supported: only false is accepted.",
      "type": "boolean"
     },
     "experts_per_token": {
      "description": "Elastic experts: routed experts per token for this request (1\u2026the model's expert count, or auto).",
      "oneOf": [
       {
        "minimum": 1,
        "type": "integer"
       },
       {
        "enum": [
         "auto"
        ],
        "type": "string"
       }
      ]
     },
     "frequency_penalty": {
      "type": "number"
     },
     "guided_json": {
      "additionalProperties": true,
      "type": "object"
     },
     "ignore_eos": {
      "type": "boolean"
     },
     "logit_bias": {
      "additionalProperties": {
       "type": "number"
      },
      "type": "object"
     },
     "logprobs": {
      "maximum": 20,
      "minimum": 0,
      "type": "integer"
     },
     "max_completion_tokens": {
      "minimum": 1,
      "type": "integer"
     },
     "max_tokens": {
      "minimum": 1,
      "type": "integer"
     },
     "min_p": {
      "maximum": 1,
      "minimum": 0,
      "type": "number"
     },
     "model": {
      "type": "string"
     },
     "n": {
      "maximum": 16,
      "minimum": 1,
      "type": "integer"
     },
     "presence_penalty": {
      "type": "number"
     },
     "prompt": {
      "oneOf": [
       {
        "minLength": 1,
        "type": "string"
       },
       {
        "items": {
         "type": "string"
        },
        "minItems": 1,
        "type": "array"
       },
       {
        "items": {
         "type": "integer"
        },
        "minItems": 1,
        "type": "array"
       }
      ]
     },
     "repetition_penalty": {
      "exclusiveMinimum": 0,
      "type": "number"
     },
     "response_format": {
      "additionalProperties": true,
      "type": "object"
     },
     "seed": {
      "type": "integer"
     },
     "skip_special_tokens": {
      "type": "boolean"
     },
     "speculative": {
      "description": "Per-request opt-out of the server's speculative decoding.",
      "type": "boolean"
     },
     "stop": {
      "oneOf": [
       {
        "type": "string"
       },
       {
        "items": {
         "type": "string"
        },
        "type": "array"
       }
      ]
     },
     "stream": {
      "type": "boolean"
     },
     "stream_options": {
      "properties": {
       "include_usage": {
        "type": "boolean"
       }
      },
      "type": "object"
     },
     "temperature": {
      "minimum": 0,
      "type": "number"
     },
     "top_k": {
      "minimum": 0,
      "type": "integer"
     },
     "top_logprobs": {
      "type": "integer"
     },
     "top_p": {
      "exclusiveMinimum": 0,
      "maximum": 1,
      "type": "number"
     }
    },
    "required": [
     "model",
     "prompt"
    ],
    "type": "object"
   },
   "CountTokensRequest": {
    "allOf": [
     {
      "$ref": "#/components/schemas/MessagesBody"
     }
    ],
    "description": "A Messages request to count: max_tokens and sampling fields are not needed.",
    "required": [
     "messages",
     "model"
    ]
   },
   "DrainRequest": {
    "properties": {
     "worker": {
      "type": "string"
     }
    },
    "required": [
     "worker"
    ],
    "type": "object"
   },
   "Error": {
    "properties": {
     "error": {
      "properties": {
       "code": {
        "type": [
         "string",
         "null"
        ]
       },
       "message": {
        "type": "string"
       },
       "param": {
        "type": [
         "string",
         "null"
        ]
       },
       "type": {
        "type": "string"
       }
      },
      "required": [
       "message",
       "type"
      ],
      "type": "object"
     }
    },
    "required": [
     "error"
    ],
    "type": "object"
   },
   "GenerateRequest": {
    "properties": {
     "emit_logits": {
      "type": "boolean"
     },
     "experts_per_token": {
      "description": "Elastic experts: routed experts per token for this request (1\u2026the model's expert count, or auto).",
      "oneOf": [
       {
        "minimum": 1,
        "type": "integer"
       },
       {
        "enum": [
         "auto"
        ],
        "type": "string"
       }
      ]
     },
     "ignore_eos": {
      "type": "boolean"
     },
     "max_new_tokens": {
      "type": "integer"
     },
     "prompt_ids": {
      "items": {
       "minimum": 0,
       "type": "integer"
      },
      "minItems": 1,
      "type": "array"
     },
     "seed": {
      "type": "integer"
     },
     "speculative": {
      "type": "boolean"
     },
     "temperature": {
      "minimum": 0,
      "type": "number"
     },
     "top_k": {
      "minimum": 0,
      "type": "integer"
     },
     "top_p": {
      "exclusiveMinimum": 0,
      "maximum": 1,
      "type": "number"
     }
    },
    "required": [
     "prompt_ids"
    ],
    "type": "object"
   },
   "HeartbeatRequest": {
    "additionalProperties": true,
    "properties": {
     "address": {
      "pattern": "^(\\[[0-9A-Fa-f:.]+\\]|[^:\\[\\]\\s]+):[0-9]{1,5}$",
      "type": "string"
     },
     "name": {
      "type": "string"
     }
    },
    "required": [
     "name",
     "address"
    ],
    "type": "object"
   },
   "JoinRequest": {
    "additionalProperties": true,
    "properties": {
     "address": {
      "pattern": "^(\\[[0-9A-Fa-f:.]+\\]|[^:\\[\\]\\s]+):[0-9]{1,5}$",
      "type": "string"
     },
     "cores": {
      "type": "integer"
     },
     "fingerprint": {
      "type": "string"
     },
     "memory_bytes": {
      "type": "integer"
     },
     "name": {
      "type": "string"
     }
    },
    "required": [
     "name",
     "address",
     "cores",
     "memory_bytes",
     "fingerprint"
    ],
    "type": "object"
   },
   "MessagesBody": {
    "description": "The fields of an Anthropic Messages request (shared by /v1/messages and /v1/messages/count_tokens).",
    "properties": {
     "max_tokens": {
      "minimum": 1,
      "type": "integer"
     },
     "messages": {
      "items": {
       "additionalProperties": true,
       "properties": {
        "content": {
         "oneOf": [
          {
           "type": "string"
          },
          {
           "items": {
            "additionalProperties": true,
            "properties": {
             "type": {
              "type": "string"
             }
            },
            "required": [
             "type"
            ],
            "type": "object"
           },
           "type": "array"
          }
         ]
        },
        "role": {
         "enum": [
          "user",
          "assistant"
         ],
         "type": "string"
        }
       },
       "required": [
        "role",
        "content"
       ],
       "type": "object"
      },
      "minItems": 1,
      "type": "array"
     },
     "metadata": {
      "additionalProperties": true,
      "type": "object"
     },
     "model": {
      "type": "string"
     },
     "stop_sequences": {
      "items": {
       "type": "string"
      },
      "type": "array"
     },
     "stream": {
      "type": "boolean"
     },
     "system": {
      "oneOf": [
       {
        "type": "string"
       },
       {
        "items": {
         "additionalProperties": true,
         "properties": {
          "text": {
           "type": "string"
          },
          "type": {
           "const": "text",
           "type": "string"
          }
         },
         "required": [
          "type",
          "text"
         ],
         "type": "object"
        },
        "type": "array"
       }
      ]
     },
     "temperature": {
      "minimum": 0,
      "type": "number"
     },
     "thinking": {
      "additionalProperties": true,
      "type": "object"
     },
     "tool_choice": {
      "additionalProperties": true,
      "properties": {
       "type": {
        "enum": [
         "auto",
         "any",
         "tool",
         "none"
        ],
        "type": "string"
       }
      },
      "required": [
       "type"
      ],
      "type": "object"
     },
     "tools": {
      "items": {
       "additionalProperties": true,
       "properties": {
        "input_schema": {
         "type": "object"
        },
        "name": {
         "type": "string"
        }
       },
       "required": [
        "name"
       ],
       "type": "object"
      },
      "type": "array"
     },
     "top_k": {
      "minimum": 0,
      "type": "integer"
     },
     "top_p": {
      "exclusiveMinimum": 0,
      "maximum": 1,
      "type": "number"
     }
    },
    "type": "object"
   },
   "MessagesRequest": {
    "allOf": [
     {
      "$ref": "#/components/schemas/MessagesBody"
     }
    ],
    "required": [
     "max_tokens",
     "messages",
     "model"
    ]
   },
   "Readiness": {
    "additionalProperties": true,
    "properties": {
     "ready": {
      "type": "boolean"
     },
     "reason": {
      "type": "string"
     }
    },
    "required": [
     "ready"
    ],
    "type": "object"
   },
   "RebalanceRequest": {
    "dependentRequired": {
     "objective": [
      "extra_slots"
     ]
    },
    "properties": {
     "dry_run": {
      "type": "boolean"
     },
     "extra_slots": {
      "maximum": 64,
      "minimum": 0,
      "type": "number"
     },
     "objective": {
      "enum": [
       "tokens",
       "activated"
      ],
      "type": "string"
     }
    },
    "required": [
     "dry_run"
    ],
    "type": "object"
   },
   "ScaleRequest": {
    "properties": {
     "replicas": {
      "minimum": 1,
      "type": "integer"
     }
    },
    "required": [
     "replicas"
    ],
    "type": "object"
   },
   "TokenizeRequest": {
    "anyOf": [
     {
      "required": [
       "prompt"
      ]
     },
     {
      "required": [
       "messages"
      ]
     }
    ],
    "properties": {
     "add_generation_prompt": {
      "type": "boolean"
     },
     "add_special_tokens": {
      "type": "boolean"
     },
     "messages": {
      "items": {
       "$ref": "#/components/schemas/ChatMessage"
      },
      "minItems": 1,
      "type": "array"
     },
     "model": {
      "type": "string"
     },
     "prompt": {
      "type": "string"
     }
    },
    "type": "object"
   },
   "Usage": {
    "properties": {
     "completion_tokens": {
      "type": "integer"
     },
     "prompt_tokens": {
      "type": "integer"
     },
     "prompt_tokens_details": {
      "properties": {
       "cached_tokens": {
        "type": "integer"
       }
      },
      "type": "object"
     },
     "total_tokens": {
      "type": "integer"
     }
    },
    "type": "object"
   }
  },
  "securitySchemes": {
   "bearer": {
    "description": "The cluster secret",
    "scheme": "bearer",
    "type": "http"
   }
  }
 },
 "info": {
  "description": "OpenAI- and Anthropic-compatible generation, Jindou's token-id generation, health/readiness, Prometheus metrics and the cluster admin API of `jindoud coordinator` / `jindoud local` (docs/api.md, docs/admin-api.md). With a cluster secret (`--token-file`) every route but /health, /ready and /openapi.json needs `Authorization: Bearer <secret>` (the Anthropic route also takes `x-api-key`). Every answer carries `x-request-id`.",
  "title": "Jindou coordinator API",
  "version": "1"
 },
 "openapi": "3.1.0",
 "paths": {
  "/health": {
   "get": {
    "operationId": "health",
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     }
    },
    "security": [],
    "summary": "Liveness: the process serves HTTP; reports readiness and served experts"
   }
  },
  "/metrics": {
   "get": {
    "operationId": "metrics",
    "responses": {
     "200": {
      "content": {
       "text/plain": {
        "schema": {
         "type": "string"
        }
       }
      },
      "description": "Prometheus text format"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Prometheus metrics"
   }
  },
  "/openapi.json": {
   "get": {
    "operationId": "openapi",
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     }
    },
    "security": [],
    "summary": "This document"
   }
  },
  "/ready": {
   "get": {
    "operationId": "ready",
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Readiness"
        }
       }
      },
      "description": "OK"
     },
     "503": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Readiness"
        }
       }
      },
      "description": "Not ready, with the reason"
     }
    },
    "security": [],
    "summary": "Readiness: 200 only when every expert of the active placement is served by a live worker"
   }
  },
  "/tokenize": {
   "post": {
    "operationId": "tokenize",
    "requestBody": {
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/TokenizeRequest"
       }
      }
     },
     "required": true
    },
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "400": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "404": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "413": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "429": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "503": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Token ids of a prompt or of a chat rendered by the chat template (vLLM)"
   }
  },
  "/v1/admin/drain": {
   "post": {
    "operationId": "drain",
    "requestBody": {
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/DrainRequest"
       }
      }
     },
     "required": true
    },
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "400": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "404": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "409": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "413": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Move a worker's experts away (jindouctl drain)"
   }
  },
  "/v1/admin/load": {
   "get": {
    "operationId": "load",
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Measured load per worker and expert"
   }
  },
  "/v1/admin/rebalance": {
   "post": {
    "operationId": "rebalance",
    "requestBody": {
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/RebalanceRequest"
       }
      }
     },
     "required": true
    },
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "400": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "409": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "413": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Placement by measured load (jindouctl rebalance)"
   }
  },
  "/v1/admin/scale": {
   "post": {
    "operationId": "scale",
    "requestBody": {
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/ScaleRequest"
       }
      }
     },
     "required": true
    },
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "400": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "409": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "413": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Copies of every expert (jindouctl scale)"
   }
  },
  "/v1/admin/shards": {
   "get": {
    "operationId": "shards",
    "parameters": [
     {
      "in": "query",
      "name": "layer",
      "required": false,
      "schema": {
       "type": "integer"
      }
     }
    ],
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "400": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Which worker hosts which experts (jindouctl shards)"
   }
  },
  "/v1/admin/status": {
   "get": {
    "operationId": "status",
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Workers, state, experts, memory, load share (jindouctl status)"
   }
  },
  "/v1/admin/verify": {
   "get": {
    "operationId": "verify",
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Checks every expert of the placement is served (jindouctl verify)"
   }
  },
  "/v1/admin/workers/heartbeat": {
   "post": {
    "operationId": "workerHeartbeat",
    "requestBody": {
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/HeartbeatRequest"
       }
      }
     },
     "required": true
    },
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "400": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "404": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "413": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "A joined worker's heartbeat"
   }
  },
  "/v1/admin/workers/join": {
   "post": {
    "operationId": "joinWorker",
    "requestBody": {
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/JoinRequest"
       }
      }
     },
     "required": true
    },
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "400": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "409": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "413": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "A worker joins the cluster (jindoud worker --join)"
   }
  },
  "/v1/chat/completions": {
   "post": {
    "operationId": "createChatCompletion",
    "requestBody": {
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/ChatCompletionRequest"
       }
      }
     },
     "required": true
    },
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/ChatCompletion"
        }
       },
       "text/event-stream": {
        "schema": {
         "description": "Server-sent events, one JSON chunk per `data:` line, ending with `data: [DONE]` (OpenAI) or Anthropic's event sequence.",
         "properties": {
          "data": {
           "type": "string"
          },
          "event": {
           "type": "string"
          },
          "id": {
           "type": "string"
          }
         },
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "400": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "404": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "413": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "429": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "503": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Chat completion (OpenAI), with reasoning, tool calls and structured outputs"
   }
  },
  "/v1/completions": {
   "post": {
    "operationId": "createCompletion",
    "requestBody": {
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/CompletionRequest"
       }
      }
     },
     "required": true
    },
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Completion"
        }
       },
       "text/event-stream": {
        "schema": {
         "description": "Server-sent events, one JSON chunk per `data:` line, ending with `data: [DONE]` (OpenAI) or Anthropic's event sequence.",
         "properties": {
          "data": {
           "type": "string"
          },
          "event": {
           "type": "string"
          },
          "id": {
           "type": "string"
          }
         },
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "400": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "404": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "413": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "429": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "503": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Text completion (OpenAI)"
   }
  },
  "/v1/jindou/generate": {
   "post": {
    "operationId": "generateTokens",
    "requestBody": {
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/GenerateRequest"
       }
      }
     },
     "required": true
    },
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "400": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "404": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "413": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "429": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "503": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Token-id generation through the batch scheduler (jindouctl generate)"
   }
  },
  "/v1/messages": {
   "post": {
    "operationId": "createMessage",
    "requestBody": {
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/MessagesRequest"
       }
      }
     },
     "required": true
    },
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       },
       "text/event-stream": {
        "schema": {
         "description": "Server-sent events, one JSON chunk per `data:` line, ending with `data: [DONE]` (OpenAI) or Anthropic's event sequence.",
         "properties": {
          "data": {
           "type": "string"
          },
          "event": {
           "type": "string"
          },
          "id": {
           "type": "string"
          }
         },
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "400": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "404": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "413": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "429": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "503": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Messages (Anthropic), with thinking and tool use"
   }
  },
  "/v1/messages/count_tokens": {
   "post": {
    "operationId": "countMessageTokens",
    "requestBody": {
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/CountTokensRequest"
       }
      }
     },
     "required": true
    },
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "400": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "404": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "413": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "429": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "503": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Prompt tokens a Messages request would use (Anthropic)"
   }
  },
  "/v1/models": {
   "get": {
    "operationId": "listModels",
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "additionalProperties": true,
         "type": "object"
        }
       }
      },
      "description": "OK"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "The served model (OpenAI)"
   }
  },
  "/v1/node/files/{name}": {
   "get": {
    "operationId": "modelFileRange",
    "parameters": [
     {
      "in": "path",
      "name": "name",
      "required": true,
      "schema": {
       "type": "string"
      }
     },
     {
      "in": "query",
      "name": "offset",
      "required": true,
      "schema": {
       "minimum": 0,
       "type": "integer"
      }
     },
     {
      "in": "query",
      "name": "length",
      "required": true,
      "schema": {
       "maximum": 67108864,
       "minimum": 1,
       "type": "integer"
      }
     }
    ],
    "responses": {
     "200": {
      "content": {
       "application/octet-stream": {
        "schema": {
         "format": "binary",
         "type": "string"
        }
       }
      },
      "description": "The bytes; their SHA-256 in the x-jindou-sha256 header",
      "headers": {
       "x-jindou-sha256": {
        "schema": {
         "type": "string"
        }
       }
      }
     },
     "400": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     },
     "404": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "No such file"
     },
     "416": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "Range outside the file or too long"
     }
    },
    "summary": "A byte range of one of the model's files"
   }
  },
  "/v1/node/manifest": {
   "get": {
    "operationId": "modelManifest",
    "responses": {
     "200": {
      "content": {
       "application/json": {
        "schema": {
         "properties": {
          "entry": {
           "type": "string"
          },
          "files": {
           "items": {
            "properties": {
             "name": {
              "type": "string"
             },
             "prefix": {
              "type": "integer"
             },
             "size": {
              "type": "integer"
             }
            },
            "required": [
             "name",
             "size",
             "prefix"
            ],
            "type": "object"
           },
           "type": "array"
          },
          "fingerprint": {
           "type": "string"
          }
         },
         "required": [
          "fingerprint",
          "entry",
          "files"
         ],
         "type": "object"
        }
       }
      },
      "description": "The model's files: name, size and the leading bytes (header) a mirror copies"
     },
     "401": {
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      },
      "description": "An error, OpenAI-shaped"
     }
    },
    "summary": "Model files for workers without a local copy (jindoud worker --cache-dir); with --serve-model-files"
   }
  }
 },
 "security": [
  {
   "bearer": []
  }
 ],
 "servers": [
  {
   "url": "http://127.0.0.1:8080"
  }
 ]
}
"""#
}
