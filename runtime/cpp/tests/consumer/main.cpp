// The example of docs/cpp.md, compiled against the installed package.
#include <dnx/runtime.hpp>

#include <iostream>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::cerr << "usage: consumer MODEL IMAGE\n";
        return 2;
    }
    try {
        const auto model = dnx::Classifier::load(argv[1]);
        const auto top = model.classify(dnx::Image::from_file(argv[2]), 3);
        for (std::size_t i = 0; i < top.labels.size(); ++i)
            std::cout << top.labels[i] << " " << top.probabilities[i] << "\n";
        return 0;
    } catch (const dnx::Error& e) {
        std::cerr << e.what() << "\n";
        return 1;
    }
}
