// Defaults for `make sanitize` builds only: nothing here is compiled into a normal build.
//
// LeakSanitizer suppressions, built into the instrumented incidentd, so that they apply however it is started
// (systemd-socket-activate, for one, passes the daemon no LSAN_OPTIONS). They are the leaks of third-party code
// listed, with the reasons, in mk/lsan.supp.
typedef int incidentd_sanitizer_defaults;  // keeps this file a valid translation unit in normal builds

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:TOMLKit\n"
           "leak:toml::v3\n"
           "leak:libXCTest.so\n"
           "leak:ArgumentParser\n";
}
#endif
#endif
