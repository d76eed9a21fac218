// Defaults for `make sanitize` builds only: nothing here is compiled into a normal build.
//
// Sanitizer suppressions, built into the instrumented incidentd, so that they apply however it is started
// (systemd-socket-activate, for one, passes the daemon no LSAN_OPTIONS or TSAN_OPTIONS). They are the lists of
// mk/lsan.supp (leaks of third-party code) and mk/tsan.supp (Synchronization.Mutex, which TSan cannot see), with
// the reasons there.
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
#if __has_feature(thread_sanitizer)
// ThreadSanitizer cannot see Synchronization.Mutex on Linux: see mk/tsan.supp for these and why they are false.
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void) {
    return "race:14GroupCommitterC*5State*zYuYTXEfU\n"
           "race:13AnswerMailboxC*7pending_Sb9scheduledt*XEfU\n"
           "race:15RequestExecutorC7mailbox3for*zYuYTXEfU\n"
           "race:13GazetteerMemoC7resolve*zYuYTXEfU\n"
           "race:12AppendIntakeC*5State*zYuYTXEfU\n"
           "race:05EventB0C12cityDocument2id*zYuYTXEfU\n"
           "race:05EventB0C17loadCityDocuments*zYuYTXEfU\n"
           "race:05EventB0C6commit_15committedCities*SDySSSays5UInt8VGGzYuYTXEfU\n"
           "race:05EventB0C6verify7stretch*zYuYTXEfU\n"
           "race:12AppendIntakeC7recycle*zYuYTXEfU\n"
           "race:12AppendIntakeC12freeAnswered*zYuYTXEfU\n"
           "race:05EventB0C20rebuildFromSummaries*ResultOyAA10StreamFoldV*zYuYTXEfU\n"
           "race:10SortedRunsC*zYuYTXEfU\n";
}
#endif
#endif
