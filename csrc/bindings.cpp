// bindings.cpp - wav2small._engine: the C engine for Python (the only C++ file).
//
// Thin on purpose: converts arrays, releases the GIL around engine calls, maps each w2s_status
// to an exception of wav2small.errors, and exposes the model's layout, tensors and stage trace
// for the writer (training/export.py) and the bit-exact tests (wav2small/_reference.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

extern "C" {
#include "requant.h"
#include "w2s.h"
#include "w2s_internal.h"
}

namespace py = pybind11;

#define W2S_STR_(x) #x
#define W2S_STR(x) W2S_STR_(x)

namespace {

[[noreturn]] void raise_status(w2s_status st, const std::string &context) {
    const char *cls = "Wav2SmallError";
    switch (st) {
    case W2S_ERR_TRUNCATED: cls = "ModelTruncatedError"; break;
    case W2S_ERR_MAGIC: cls = "NotAModelError"; break;
    case W2S_ERR_VERSION: cls = "ModelVersionError"; break;
    case W2S_ERR_CHECKSUM: cls = "ModelChecksumError"; break;
    case W2S_ERR_FORMAT: cls = "ModelFormatError"; break;
    case W2S_ERR_TOO_SHORT: cls = "AudioTooShortError"; break;
    case W2S_ERR_TOO_LONG: cls = "AudioTooLongError"; break;
    default: break;
    }
    py::object exc = py::module_::import("wav2small.errors").attr(cls);
    std::string msg = context + ": " + w2s_status_str(st) + " (status " + std::to_string(int(st)) + ")";
    PyErr_SetString(exc.ptr(), msg.c_str());
    throw py::error_already_set();
}

const char *dtype_name(w2s_dtype dt) {
    switch (dt) {
    case W2S_DT_I8: return "int8";
    case W2S_DT_I16: return "int16";
    case W2S_DT_U16: return "uint16";
    case W2S_DT_I32: return "int32";
    case W2S_DT_U32: return "uint32";
    }
    return "?";
}

std::string tensor_name(const w2s_tensor *t) {
    std::string name(t->name);
    if (t->layer > 0) name = "l" + std::to_string(t->layer) + name.substr(name.find('.'));
    return name;
}

w2s_config config_from_dict(const py::dict &d) {
    w2s_config c;
    c.sample_rate = d["sample_rate"].cast<int32_t>();
    c.n_fft = d["n_fft"].cast<int32_t>();
    c.hop = d["hop"].cast<int32_t>();
    c.n_mels = d["n_mels"].cast<int32_t>();
    c.channels = d["channels"].cast<int32_t>();
    c.n_layers = d["n_layers"].cast<int32_t>();
    c.pool_after = d["pool_after"].cast<int32_t>();
    c.n_outputs = d["n_outputs"].cast<int32_t>();
    c.out_frac_bits = d["out_frac_bits"].cast<int32_t>();
    c.mel_weights = d["mel_weights"].cast<int32_t>();
    c.flags = d.contains("flags") ? d["flags"].cast<uint32_t>() : 0u;
    return c;
}

py::dict config_to_dict(const w2s_config &c) {
    py::dict d;
    d["sample_rate"] = c.sample_rate;
    d["n_fft"] = c.n_fft;
    d["hop"] = c.hop;
    d["n_mels"] = c.n_mels;
    d["channels"] = c.channels;
    d["n_layers"] = c.n_layers;
    d["pool_after"] = c.pool_after;
    d["n_outputs"] = c.n_outputs;
    d["out_frac_bits"] = c.out_frac_bits;
    d["mel_weights"] = c.mel_weights;
    d["flags"] = c.flags;
    return d;
}

using pcm_array = py::array_t<int16_t, py::array::c_style | py::array::forcecast>;

// The outputs Python sees of one run: the n_outputs values, and with an uncertainty head the
// modulation after them (dB Q_DB), then with W2S_FLAG_STEADY the steadiness (Q15), which the
// decision reads too; decide() takes them back.
py::ssize_t fixed_count(const w2s_model &m) {
    return m.config.n_outputs + ((m.config.flags & W2S_FLAG_UNCERTAINTY) ? 1 : 0) +
           ((m.config.flags & W2S_FLAG_STEADY) ? 1 : 0);
}

py::array_t<int32_t> fixed_outputs(const w2s_model &m, const w2s_output &out) {
    const py::ssize_t n = fixed_count(m);
    py::array_t<int32_t> r(n);
    int32_t *p = r.mutable_data();
    std::memcpy(p, out.value, sizeof(int32_t) * size_t(out.n_outputs));
    if (m.config.flags & W2S_FLAG_UNCERTAINTY) p[out.n_outputs] = out.modulation;
    if (m.config.flags & W2S_FLAG_STEADY) p[out.n_outputs + 1] = out.steady;
    return r;
}

// A parsed model that owns a 4-byte-aligned copy of its file.
class Model {
  public:
    explicit Model(py::bytes data) {
        std::string s = data;
        buf_.resize(s.size() / 4 + 1);  // never empty: an empty file is "truncated", not a NULL buffer
        if (!s.empty()) std::memcpy(buf_.data(), s.data(), s.size());
        len_ = s.size();
        w2s_status st = w2s_model_init(&m_, buf_.data(), len_);
        if (st != W2S_OK) raise_status(st, "cannot load model");
    }

    const w2s_model *raw() const { return &m_; }
    py::dict config() const { return config_to_dict(m_.config); }
    size_t nbytes() const { return len_; }
    size_t arena_size(size_t n) const { return w2s_arena_size(&m_, n); }
    size_t stream_arena_size() const { return w2s_stream_arena_size(&m_); }

    // Kernel set (w2s_isa, csrc/kernels.h): "auto" is the best this CPU runs; the bit-exact tests
    // force the others. Changes the model: set it before the model is shared by threads.
    void set_isa(const std::string &name) {
        for (int32_t i = W2S_ISA_AUTO; i <= W2S_ISA_DSP; i++) {
            if (name != w2s_isa_name(i)) continue;
            if (!w2s_isa_resolve(i)) throw py::value_error("kernel set '" + name + "' is not available on this CPU/build");
            m_.w.isa = i;
            return;
        }
        throw py::value_error("unknown kernel set '" + name + "'");
    }
    std::string isa() const { return w2s_isa_name(w2s_isa_resolve(m_.w.isa)); }

    // Many clips on `threads` threads (each with its own arena), the GIL released throughout:
    // a list of int32 output arrays, in order. The first failing clip raises, after all ran.
    py::list predict_many(const py::list &clips, int threads) const {
        std::vector<pcm_array> pcm;
        for (const py::handle &c : clips) {
            pcm.push_back(pcm_array::ensure(c));
            if (!pcm.back() || pcm.back().ndim() != 1) throw py::value_error("each clip must be a 1-D int16 array");
        }
        const size_t n = pcm.size();
        std::vector<const int16_t *> data(n);
        std::vector<size_t> len(n);
        for (size_t i = 0; i < n; i++) { data[i] = pcm[i].data(); len[i] = size_t(pcm[i].shape(0)); }
        std::vector<w2s_output> out(n);
        std::vector<w2s_status> st(n, W2S_OK);
        {
            py::gil_scoped_release nogil;
            std::atomic<size_t> next{0};
            auto work = [&]() {
                for (size_t i; (i = next.fetch_add(1)) < n;) {
                    const size_t need = w2s_arena_size(&m_, len[i]);
                    std::vector<uint64_t> own;
                    st[i] = w2s_forward(&m_, data[i], len[i], arena_for(need, own), need, &out[i], nullptr, nullptr);
                }
            };
            const size_t k = std::max<size_t>(1, std::min<size_t>(size_t(threads < 1 ? 1 : threads), n));
            std::vector<std::thread> pool;
            for (size_t t = 1; t < k; t++) pool.emplace_back(work);
            work();
            for (auto &t : pool) t.join();
        }
        py::list result;
        for (size_t i = 0; i < n; i++) {
            if (st[i] != W2S_OK) raise_status(st[i], "cannot run clip " + std::to_string(i) + " (" + std::to_string(len[i]) + " samples)");
            result.append(fixed_outputs(m_, out[i]));
        }
        return result;
    }

    // The prenorm statistics of a whole clip (the first of the two streaming passes).
    py::tuple clip_stats(const pcm_array &pcm) const {
        if (pcm.ndim() != 1) throw py::value_error("pcm must be 1-D");
        w2s_stats st;
        w2s_status rc = w2s_clip_stats(&m_, pcm.data(), size_t(pcm.shape(0)), &st);
        if (rc != W2S_OK) raise_status(rc, "cannot take the statistics of " + std::to_string(pcm.shape(0)) + " samples");
        return py::make_tuple(st.mean, st.log2_var);
    }

    // int16 PCM -> int32 outputs (fixed point); the GIL is released while the engine runs.
    py::array_t<int32_t> predict(const pcm_array &pcm) const {
        return fixed_outputs(m_, run(pcm, nullptr, nullptr));
    }

    // The model's own decision thresholds, or None without an uncertainty head.
    py::object thresholds() const {
        w2s_thresholds t;
        if (w2s_default_thresholds(&m_, &t) != W2S_OK) return py::none();
        return py::make_tuple(t.max_log_sigma, t.min_speech_logit, t.min_modulation, t.max_steady);
    }

    // w2s_decide on outputs of this model (as predict returns them) with the given thresholds.
    int decide(const py::array_t<int32_t, py::array::c_style | py::array::forcecast> &values,
               int32_t max_log_sigma, int32_t min_speech_logit, int32_t min_modulation,
               int32_t max_steady) const {
        const py::ssize_t n = fixed_count(m_);
        if (values.ndim() != 1 || values.shape(0) != n)
            throw py::value_error("decide: expected " + std::to_string(n) + " outputs");
        w2s_output out{};
        std::memcpy(out.value, values.data(), sizeof(int32_t) * size_t(m_.config.n_outputs));
        out.n_outputs = m_.config.n_outputs;
        out.frac_bits = m_.config.out_frac_bits;
        if (m_.config.flags & W2S_FLAG_UNCERTAINTY) out.modulation = values.data()[m_.config.n_outputs];
        if (m_.config.flags & W2S_FLAG_STEADY) out.steady = values.data()[m_.config.n_outputs + 1];
        w2s_thresholds t{max_log_sigma, min_speech_logit, min_modulation, max_steady};
        return int(w2s_decide(&m_, &out, &t));
    }

    // Every stage output of one run, in order: a list of (stage, layer, array).
    py::list trace(const pcm_array &pcm) const {
        py::list stages;
        run(pcm, &Model::collect, &stages);
        return stages;
    }

    // Copies of every tensor in the file, by name (the writer's own view of what it wrote).
    py::dict tensors() const {
        struct ctx_t { const uint8_t *base; py::dict out; } ctx{reinterpret_cast<const uint8_t *>(buf_.data()), {}};
        w2s_layout(&m_.config, [](void *u, const w2s_tensor *t) {
            auto *c = static_cast<ctx_t *>(u);
            std::vector<py::ssize_t> shape(t->dims, t->dims + t->ndim);
            py::array a(py::dtype(dtype_name(t->dtype)), shape);
            std::memcpy(a.mutable_data(), c->base + t->offset, t->bytes);
            c->out[py::str(tensor_name(t))] = a;
        }, &ctx);
        return ctx.out;
    }

  private:
    w2s_output run(const pcm_array &pcm, w2s_trace_fn fn, void *user) const {
        if (pcm.ndim() != 1) throw py::value_error("pcm must be 1-D");
        const size_t n = size_t(pcm.shape(0));
        const size_t need = w2s_arena_size(&m_, n);
        w2s_output out;
        w2s_status st;
        if (fn) {  // the trace builds Python objects, so it keeps the GIL
            std::vector<uint64_t> arena(need / 8 + 1);
            st = w2s_forward(&m_, pcm.data(), n, arena.data(), need, &out, fn, user);
        } else {
            py::gil_scoped_release nogil;
            std::vector<uint64_t> own;
            st = w2s_forward(&m_, pcm.data(), n, arena_for(need, own), need, &out, nullptr, nullptr);
        }
        if (st != W2S_OK) raise_status(st, "cannot run on " + std::to_string(n) + " samples");
        return out;
    }

    // The arena of a clip: this thread's, kept between calls (no allocation, no page faults per
    // clip; the engine initialises all it reads), or `own` for clips beyond 16 MB of arena.
    static uint64_t *arena_for(size_t need, std::vector<uint64_t> &own) {
        thread_local std::vector<uint64_t> kept;
        std::vector<uint64_t> &a = need <= (size_t(16) << 20) ? kept : own;
        if (a.size() < need / 8 + 1) a.resize(need / 8 + 1);
        return a.data();
    }

    static void collect(void *user, w2s_trace_stage stage, int32_t layer, const void *data,
                        int32_t d0, int32_t d1, int32_t d2) {
        static const char *names[] = {"prenorm", "logmel", "conv", "pool", "pooled", "gram", "modulation",
                                      "steady", "output"};
        auto *stages = static_cast<py::list *>(user);
        std::vector<py::ssize_t> shape;
        for (int32_t d : {d0, d1, d2})
            if (d > 0) shape.push_back(d);
        const char *dt = "int32";
        if (stage == W2S_TRACE_LOGMEL || stage == W2S_TRACE_POOLED || stage == W2S_TRACE_GRAM) dt = "int16";
        if (stage == W2S_TRACE_CONV || stage == W2S_TRACE_POOL) dt = "int8";
        py::array a(py::dtype(dt), shape);
        std::memcpy(a.mutable_data(), data, size_t(a.nbytes()));
        stages->append(py::make_tuple(names[stage], layer, a));
    }

    std::vector<uint32_t> buf_;
    size_t len_ = 0;
    w2s_model m_{};
};

// A stream in an arena the object owns. A mutex serialises calls, as the GIL is released while
// the engine runs; the Python object keeps its Model alive (py::keep_alive below).
class Stream {
  public:
    Stream(const Model &model, int prenorm, int32_t mean, int32_t log2_var, int32_t log2_window,
           int32_t prior_samples) {
        w2s_stream_params p = w2s_stream_default_params();
        p.prenorm = prenorm;
        p.stats.mean = mean;
        p.stats.log2_var = log2_var;
        p.log2_window = log2_window;
        p.prior_samples = prior_samples;
        const size_t need = w2s_stream_arena_size(model.raw());
        arena_.resize(need / 8 + 1);
        arena_bytes_ = need;
        model_ = model.raw();
        w2s_status st = w2s_stream_init(&s_, model.raw(), &p, arena_.data(), need);
        if (st != W2S_OK) raise_status(st, "cannot start a stream");
    }

    void push(const pcm_array &pcm) {
        if (pcm.ndim() != 1) throw py::value_error("pcm must be 1-D");
        w2s_status st;
        {
            py::gil_scoped_release nogil;
            std::lock_guard<std::mutex> lock(mu_);
            st = w2s_stream_push_s16(s_, pcm.data(), size_t(pcm.shape(0)));
        }
        if (st != W2S_OK) raise_status(st, "cannot push " + std::to_string(pcm.shape(0)) + " samples");
    }

    py::array_t<int32_t> read() {
        w2s_output out;
        w2s_status st;
        {
            py::gil_scoped_release nogil;
            std::lock_guard<std::mutex> lock(mu_);
            st = w2s_stream_read(s_, &out);
        }
        if (st != W2S_OK) raise_status(st, "cannot read the stream after " + std::to_string(samples()) + " samples");
        return fixed_outputs(*model_, out);
    }

    void reset() {
        std::lock_guard<std::mutex> lock(mu_);
        w2s_stream_reset(s_);
    }

    uint64_t samples() {
        std::lock_guard<std::mutex> lock(mu_);
        return w2s_stream_samples(s_);
    }

    py::tuple prenorm() {
        std::lock_guard<std::mutex> lock(mu_);
        w2s_prenorm pn = w2s_stream_prenorm(s_);
        return py::make_tuple(pn.mean, pn.log2_var);
    }

    size_t arena_bytes() const { return arena_bytes_; }

  private:
    std::vector<uint64_t> arena_;
    size_t arena_bytes_ = 0;
    const w2s_model *model_ = nullptr;  // kept alive by the Python object (keep_alive)
    w2s_stream *s_ = nullptr;
    std::mutex mu_;
};

py::dict stream_sizes(const Model &model) {
    w2s_stream_sizes z;
    w2s_stream_sizes_of(&model.raw()->config, &z);
    py::dict d;
    d["state"] = z.state;
    d["vox"] = z.vox;
    d["lines"] = z.lines;
    d["work_push"] = z.work_push;
    d["work_read"] = z.work_read;
    d["kernel"] = z.kernel;
    d["total"] = z.total;
    return d;
}

// Elementwise wrappers of the rounding rules, for the edge sweeps of the tests.
template <typename F>
py::array_t<int64_t> map3(py::array_t<int64_t> a, py::array_t<int64_t> b, py::array_t<int64_t> c, F f) {
    auto x = a.unchecked<1>();
    auto y = b.unchecked<1>();
    auto z = c.unchecked<1>();
    if (x.shape(0) != y.shape(0) || x.shape(0) != z.shape(0)) throw py::value_error("length mismatch");
    py::array_t<int64_t> r(x.shape(0));
    auto o = r.mutable_unchecked<1>();
    for (py::ssize_t i = 0; i < x.shape(0); i++) o(i) = f(x(i), y(i), z(i));
    return r;
}

}  // namespace

PYBIND11_MODULE(_engine, m) {
    m.doc() = "wav2small C engine (int8 Wav2Small inference); use wav2small.Model instead";
    m.attr("__version__") = W2S_STR(VERSION_INFO);  // a stale build shows up as a version mismatch
    m.attr("FORMAT_MAGIC") = W2S_FORMAT_MAGIC;
    m.attr("FORMAT_VERSION") = W2S_FORMAT_VERSION;
    m.attr("HEADER_BYTES") = W2S_HEADER_BYTES;
    m.attr("MAX_SAMPLES") = W2S_MAX_SAMPLES;
    m.attr("MAX_FRAMES") = W2S_MAX_FRAMES;
    m.attr("Q_PCM") = W2S_Q_PCM;
    m.attr("Q_TRIG") = W2S_Q_TRIG;
    m.attr("Q_WINDOWED") = W2S_Q_WINDOWED;
    m.attr("Q_LOG") = W2S_Q_LOG;
    m.attr("Q_DB") = W2S_Q_DB;
    m.attr("Q_EXP_LUT") = W2S_Q_EXP_LUT;
    m.attr("Q_EXP") = W2S_Q_EXP;
    m.attr("EXP_LUT_SIZE") = W2S_EXP_LUT_SIZE;
    m.attr("FLAG_UNCERTAINTY") = W2S_FLAG_UNCERTAINTY;
    m.attr("FLAG_STEADY") = W2S_FLAG_STEADY;
    m.attr("STEADY_ONE") = W2S_STEADY_ONE;
    m.attr("STEADY_COS2_ONE") = W2S_STEADY_COS2_ONE;
    m.attr("RELIABLE") = int(W2S_RELIABLE);
    m.attr("NO_SPEECH") = int(W2S_NO_SPEECH);
    m.attr("TOO_UNCERTAIN") = int(W2S_TOO_UNCERTAIN);
    m.attr("NO_DECISION") = int(W2S_NO_DECISION);

    py::class_<Model>(m, "Model", "A validated model (copy of the file bytes) and the engine that runs it.")
        .def(py::init<py::bytes>(), py::arg("data"), "Parse and validate a model; raises a ModelError subclass.")
        .def_property_readonly("config", &Model::config, "Configuration from the file header.")
        .def_property_readonly("nbytes", &Model::nbytes, "Size of the model file in bytes.")
        .def("arena_size", &Model::arena_size, py::arg("n_samples"), "Arena bytes for a clip (0: length out of range).")
        .def("predict", &Model::predict, py::arg("pcm"), "int16 PCM -> int32 outputs in fixed point (GIL released).")
        .def("trace", &Model::trace, py::arg("pcm"), "Run and return every stage output: [(stage, layer, array)].")
        .def_property_readonly("thresholds", &Model::thresholds,
                               "(max_log_sigma, min_speech_logit, min_modulation, max_steady) of the model's decision, "
                               "or None without an uncertainty head (max_steady STEADY_ONE without FLAG_STEADY).")
        .def("decide", &Model::decide, py::arg("values"), py::arg("max_log_sigma"), py::arg("min_speech_logit"),
             py::arg("min_modulation"), py::arg("max_steady"),
             "w2s_decide: the decision code for outputs of this model under the given thresholds.")
        .def("tensors", &Model::tensors, "Copies of every tensor of the file, by name.")
        .def_property_readonly("stream_arena_size", &Model::stream_arena_size, "Arena bytes of one stream (any length).")
        .def("set_isa", &Model::set_isa, py::arg("name"),
             "Force a kernel set ('auto', 'portable', 'sse4.1', 'avx2', 'neon', 'dsp'); for the bit-exact tests.")
        .def_property_readonly("isa", &Model::isa, "The kernel set the engine runs for this model.")
        .def("predict_many", &Model::predict_many, py::arg("clips"), py::arg("threads") = 1,
             "int16 clips -> int32 outputs, spread over threads (GIL released).")
        .def("clip_stats", &Model::clip_stats, py::arg("pcm"),
             "Prenorm statistics of a whole int16 clip: (mean, log2_var), as the batch engine computes them.");

    m.attr("PRENORM_RUNNING") = int(W2S_PRENORM_RUNNING);
    m.attr("PRENORM_FIXED") = int(W2S_PRENORM_FIXED);
    m.attr("STATS_MAX_ABS_MEAN") = W2S_STATS_MAX_ABS_MEAN;
    m.attr("STATS_MAX_LOG2_VAR") = W2S_STATS_MAX_LOG2_VAR;
    m.attr("STREAM_MIN_LOG2_WINDOW") = W2S_STREAM_MIN_LOG2_WINDOW;
    m.attr("STREAM_MAX_LOG2_WINDOW") = W2S_STREAM_MAX_LOG2_WINDOW;
    m.attr("STREAM_DEFAULT_LOG2_WINDOW") = w2s_stream_default_params().log2_window;
    m.attr("STREAM_DEFAULT_PRIOR") = py::make_tuple(w2s_stream_default_params().stats.mean,
                                                    w2s_stream_default_params().stats.log2_var);
    m.attr("STREAM_DEFAULT_PRIOR_SAMPLES") = w2s_stream_default_params().prior_samples;
    py::class_<Stream>(m, "Stream", "A w2s_stream: push int16 chunks, read outputs at any time.")
        .def(py::init<const Model &, int, int32_t, int32_t, int32_t, int32_t>(), py::arg("model"), py::arg("prenorm"),
             py::arg("mean") = 0, py::arg("log2_var") = 0, py::arg("log2_window") = w2s_stream_default_params().log2_window,
             py::arg("prior_samples") = 0, py::keep_alive<1, 2>(),
             "Start a stream: PRENORM_FIXED uses (mean, log2_var); PRENORM_RUNNING estimates over ~2^log2_window "
             "samples, starting from (mean, log2_var) weighted as prior_samples samples.")
        .def("push", &Stream::push, py::arg("pcm"), "Feed int16 PCM, any length (GIL released).")
        .def("read", &Stream::read, "int32 outputs for all audio so far; the stream goes on (GIL released).")
        .def("reset", &Stream::reset, "Forget all audio; keep the parameters.")
        .def_property_readonly("samples", &Stream::samples, "Samples pushed since start or reset.")
        .def_property_readonly("arena_bytes", &Stream::arena_bytes, "Bytes of the stream's arena.")
        .def("prenorm", &Stream::prenorm, "(mean, log2_var) the next frame uses.");
    m.def("stream_sizes", &stream_sizes, py::arg("model"), "Where a stream's arena goes, in bytes.");

    m.def("layout", [](const py::dict &config) {
        w2s_config c = config_from_dict(config);
        py::list out;
        size_t end = w2s_layout(&c, [](void *u, const w2s_tensor *t) {
            std::vector<py::ssize_t> shape(t->dims, t->dims + t->ndim);
            static_cast<py::list *>(u)->append(py::make_tuple(tensor_name(t), dtype_name(t->dtype), py::tuple(py::cast(shape)), t->offset));
        }, &out);
        return py::make_tuple(out, end);
    }, py::arg("config"), "File layout for a config: ([(name, dtype, shape, offset)], end offset before the CRC).");

    m.def("crc32", [](py::bytes data) {
        std::string s = data;
        return w2s_crc32(reinterpret_cast<const uint8_t *>(s.data()), s.size());
    }, py::arg("data"));
    m.def("requantize", [](py::array_t<int64_t> acc, py::array_t<int64_t> mult, py::array_t<int64_t> shift) {
        return map3(acc, mult, shift, [](int64_t a, int64_t mu, int64_t s) {
            return int64_t(w2s_requantize(int32_t(a), int32_t(mu), int32_t(s)));
        });
    }, "w2s_requantize elementwise (int32 inputs carried in int64 arrays).");
    m.def("rshift_round", [](py::array_t<int64_t> x, py::array_t<int64_t> s) {
        return map3(x, s, s, [](int64_t a, int64_t sh, int64_t) { return w2s_rshift_round(a, int(sh)); });
    });
    m.def("div_round", [](py::array_t<int64_t> x, py::array_t<int64_t> d) {
        return map3(x, d, d, [](int64_t a, int64_t b, int64_t) { return w2s_div_round(a, b); });
    });
    m.def("log2_q16", [](py::array_t<uint64_t> v) {
        auto x = v.unchecked<1>();
        py::array_t<int64_t> r(x.shape(0));
        auto o = r.mutable_unchecked<1>();
        for (py::ssize_t i = 0; i < x.shape(0); i++) {
            if (x(i) == 0) throw py::value_error("log2_q16 needs v >= 1");
            o(i) = w2s_log2_q16(x(i));
        }
        return r;
    });
    m.def("best_isa", []() { return std::string(w2s_isa_name(w2s_isa_resolve(W2S_ISA_AUTO))); },
          "The kernel set this build picks on this CPU.");
    m.def("available_isas", []() {
        py::list r;
        for (int32_t i = W2S_ISA_PORTABLE; i <= W2S_ISA_DSP; i++)
            if (w2s_isa_resolve(i)) r.append(w2s_isa_name(i));
        return r;
    }, "Kernel sets this build runs on this CPU (portable first).");
    m.def("status_str", [](int st) { return std::string(w2s_status_str(w2s_status(st))); });
}
