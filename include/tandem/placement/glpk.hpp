// GLPK plumbing for the placement MILPs: silence, survival of GLPK's internal
// errors, and sparse rows. (Built only with TANDEM_HAS_GLPK.)
#pragma once

#if defined(TANDEM_HAS_GLPK)

#include <glpk.h>

#include <csetjmp>
#include <vector>

namespace tandem::milp {

namespace detail {

struct ProbDeleter {
    void operator()(glp_prob* p) const noexcept { glp_delete_prob(p); }
};

// Silences GLPK for the scope: terminal output off, and a terminal hook that
// swallows what GLPK prints even so (its error routine turns output back on
// to print "Error detected in file ..."). On exit the output flag is restored
// and the hook removed (GLPK cannot report a hook set before).
inline int swallow_glpk_output(void*, const char*) { return 1; }  // nonzero: GLPK prints nothing
class QuietGlpk {
public:
    QuietGlpk() : previous_(glp_term_out(GLP_OFF)) { glp_term_hook(&swallow_glpk_output, nullptr); }
    ~QuietGlpk() {
        glp_term_hook(nullptr, nullptr);
        glp_term_out(previous_);
    }
    QuietGlpk(const QuietGlpk&) = delete;
    QuietGlpk& operator=(const QuietGlpk&) = delete;

private:
    int previous_;
};

// GLPK reports an internal error (a failed assertion, exhausted memory) by
// calling its error hook and then abort(): fatal for a host application. The
// hook here jumps back to the call instead; GLPK's environment is then in an
// undefined state, so it is freed (glp_free_env: every GLPK object of this
// thread, the problem included, is gone) and the call reports failure. Only
// C frames (GLPK's) and trivially destructible locals lie between setjmp and
// longjmp, which is what makes the jump well-defined in C++.
struct ErrorJump {
    std::jmp_buf where;
};
inline void on_glpk_error(void* info) { std::longjmp(static_cast<ErrorJump*>(info)->where, 1); }

inline int run_glpk(glp_prob* p, const glp_smcp* parm) { return glp_simplex(p, parm); }
inline int run_glpk(glp_prob* p, const glp_iocp* parm) { return glp_intopt(p, parm); }

/// glp_simplex or glp_intopt; false if GLPK failed internally.
template <typename Params>
bool guarded(glp_prob* p, const Params* parm, int& code) {
    ErrorJump jump;
    glp_error_hook(&on_glpk_error, &jump);
    if (setjmp(jump.where) != 0) {
        glp_error_hook(nullptr, nullptr);
        glp_free_env();
        return false;
    }
    code = run_glpk(p, parm);
    glp_error_hook(nullptr, nullptr);
    return true;
}

// A sparse linear expression (1-based GLPK column indices).
struct Row {
    std::vector<int> idx{0};
    std::vector<double> val{0.0};
    void add(int col, double v) {
        if (v == 0) return;
        idx.push_back(col);
        val.push_back(v);
    }
    int size() const noexcept { return static_cast<int>(idx.size()) - 1; }
};

}  // namespace detail

}  // namespace tandem::milp

#endif  // TANDEM_HAS_GLPK
