// The shape of a service embedding dnx: one Classifier loaded at start-up and shared by a pool of
// worker threads, each taking requests (here: image paths) from a queue. The Classifier is
// thread-safe; give it as many inference requests as there are workers so none waits on another.
//
//   dnx-service-loop MODEL WORKERS IMAGE...
#include <dnx/runtime.hpp>

#include <cstdio>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: dnx-service-loop MODEL WORKERS IMAGE...\n");
        return 2;
    }
    try {
        const int workers = std::max(1, std::atoi(argv[2]));
        dnx::Options options;
        options.num_requests = workers;
        const dnx::Classifier model = dnx::Classifier::load(argv[1], options);

        std::queue<std::string> requests;
        for (int i = 3; i < argc; ++i) requests.push(argv[i]);
        std::mutex mutex;  // guards the queue and stdout
        auto serve = [&] {
            for (;;) {
                std::string path;
                {
                    std::lock_guard<std::mutex> lock(mutex);
                    if (requests.empty()) return;
                    path = requests.front();
                    requests.pop();
                }
                std::string line;
                try {  // one bad request must not take the service down
                    const dnx::Prediction p = model.classify(dnx::Image::from_file(path), 1);
                    line = path + ": " + p.labels[0] + " (" + std::to_string(p.probabilities[0]) + ")";
                } catch (const dnx::Error& e) {
                    line = path + ": error: " + e.what();
                }
                std::lock_guard<std::mutex> lock(mutex);
                std::printf("%s\n", line.c_str());
            }
        };
        std::vector<std::thread> pool;
        for (int i = 0; i < workers; ++i) pool.emplace_back(serve);
        for (auto& t : pool) t.join();
        return 0;
    } catch (const dnx::Error& e) {
        std::fprintf(stderr, "dnx-service-loop: %s\n", e.what());
        return 1;
    }
}
