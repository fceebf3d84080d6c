// llama.cpp's logits for one prompt, for tools/compare_with_llama_cpp.py: every prompt
// position, then greedy decoding. F32 KV cache, no flash attention, one thread, so the
// numbers are llama.cpp's graph in fp32.
//
//   llama_cpp_logits MODEL.gguf N_NEW ID0 ID1 ...
//   stdout: "P <position> <logits…>" per prompt position, then per new token
//           "G <step> <token>" and (except after the last) "D <step> <logits…>".
//
//   llama_cpp_logits MODEL.gguf --tokenize < TEXTS
//   llama.cpp's tokenizer only (the vocabulary, no weights): TEXTS on stdin separated by NUL
//   bytes, each tokenized without BOS/EOS and with special tokens recognised in the text
//   (llama_tokenize add_special=false, parse_special=true, as `tokenizers` matches added
//   tokens); stdout "T <index> <ids…>" per text.
//   With LLAMA_CPP_LOGITS_ROUTING=1 in the environment it also prints, during the prompt's
//   prefill, "R <layer> <position> <experts…>" per MoE layer and prompt position: every expert
//   in llama.cpp's order of descending selection score (its `ffn_moe_argsort` tensor, whose first
//   n_expert_used entries are the chosen experts). The eval callback this needs splits the graph
//   at those tensors, so use the logits of a run without it.
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int in_prefill = 0;

// ggml_backend_sched_eval_callback: ask for `ffn_moe_argsort-<layer>`, print it once computed.
static bool routing(struct ggml_tensor *t, bool ask, void *user_data) {
    (void) user_data;
    if (strncmp(t->name, "ffn_moe_argsort-", 16) != 0) return !ask;  // observe nothing else
    if (ask) return in_prefill;
    if (t->type != GGML_TYPE_I32) return true;
    const int layer = atoi(t->name + 16);
    for (int64_t token = 0; token < t->ne[1]; token++) {
        printf("R %d %d", layer, (int) token);
        for (int64_t e = 0; e < t->ne[0]; e++) printf(" %d", *(const int32_t *) ((const char *) t->data + token * t->nb[1] + e * t->nb[0]));
        printf("\n");
    }
    return true;
}

static int print_row(const char *tag, int index, const float *logits, int vocabulary) {
    int best = 0;
    printf("%s %d", tag, index);
    for (int v = 0; v < vocabulary; v++) {
        printf(" %.9g", logits[v]);
        if (logits[v] > logits[best]) best = v;
    }
    printf("\n");
    return best;
}

static int tokenize(const char *path) {
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *model = llama_model_load_from_file(path, mp);
    if (!model) return 3;
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    size_t size = 0, capacity = 1 << 16;
    char *input = malloc(capacity);
    for (size_t n; (n = fread(input + size, 1, capacity - size, stdin)) > 0;) {
        size += n;
        if (size == capacity) input = realloc(input, capacity *= 2);
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size + 16));
    int index = 0;
    for (size_t start = 0; start < size; index++) {
        size_t end = start;
        while (end < size && input[end] != 0) end++;
        const int count = llama_tokenize(vocab, input + start, (int32_t) (end - start), ids, (int32_t) (size + 16), false, true);
        if (count < 0) return 7;
        printf("T %d", index);
        for (int i = 0; i < count; i++) printf(" %d", ids[i]);
        printf("\n");
        start = end + 1;
    }
    free(ids);
    free(input);
    llama_model_free(model);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[2], "--tokenize") == 0) return tokenize(argv[1]);
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf N_NEW ID...\n", argv[0]);
        return 2;
    }
    llama_backend_init();
    struct llama_model *model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) return 3;
    const int n_new = atoi(argv[2]), n = argc - 3;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = cp.n_batch = cp.n_ubatch = 512;
    cp.n_threads = cp.n_threads_batch = 1;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    const char *dump = getenv("LLAMA_CPP_LOGITS_ROUTING");
    if (dump && strcmp(dump, "0") != 0) cp.cb_eval = routing;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx || n + n_new > 512) return 4;
    const int vocabulary = llama_vocab_n_tokens(llama_model_get_vocab(model));
    struct llama_batch batch = llama_batch_init(512, 0, 1);
    for (int i = 0; i < n; i++) {
        batch.token[i] = atoi(argv[3 + i]);
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    in_prefill = 1;
    if (llama_decode(ctx, batch)) return 5;
    in_prefill = 0;
    int next = 0;
    for (int i = 0; i < n; i++) next = print_row("P", i, llama_get_logits_ith(ctx, i), vocabulary);
    for (int step = 0; step < n_new; step++) {
        printf("G %d %d\n", step, next);
        if (step == n_new - 1) break;
        batch.token[0] = next;
        batch.pos[0] = n + step;
        batch.n_seq_id[0] = 1;
        batch.seq_id[0][0] = 0;
        batch.logits[0] = 1;
        batch.n_tokens = 1;
        if (llama_decode(ctx, batch)) return 6;
        next = print_row("D", step, llama_get_logits_ith(ctx, 0), vocabulary);
    }
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
