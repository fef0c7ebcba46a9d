// shears-kjv-splits OUT_DIR: the King James Bible from Debian's bible-kjv package, split by chapter
// into train/valid/test text files, the same split ../shared/reference/corpus.py makes: a chapter
// goes to test when CRC32(book + chapter) % 100 < 5, to valid when < 10, else to train.
#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: shears-kjv-splits OUT_DIR  (needs Debian's bible-kjv package)\n";
    return 2;
  }
  const std::string out = argv[1];
  FILE* bible = popen("bible -f gen1:1-rev22:21", "r");
  if (bible == nullptr) {
    std::cerr << "shears-kjv-splits: cannot run 'bible' (apt-get install bible-kjv)\n";
    return 1;
  }
  // Chapters in the order they first appear, each a list of verses.
  std::vector<std::pair<std::string, std::vector<std::string>>> chapters;
  std::map<std::string, size_t> index;
  const std::regex verse(R"(^(\w+?)(\d+):(\d+) (.*)$)");
  char* line = nullptr;
  size_t capacity = 0;
  ssize_t n;
  while ((n = getline(&line, &capacity, bible)) > 0) {
    std::string text(line, static_cast<size_t>(n));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    std::smatch m;
    if (!std::regex_match(text, m, verse)) continue;
    const std::string key = m[1].str() + m[2].str();
    auto [it, fresh] = index.emplace(key, chapters.size());
    if (fresh) chapters.push_back({key, {}});
    std::string body = m[4].str();
    const auto first = body.find_first_not_of(" \t");
    const auto last = body.find_last_not_of(" \t");
    chapters[it->second].second.push_back(first == std::string::npos ? "" : body.substr(first, last - first + 1));
  }
  free(line);
  if (pclose(bible) != 0 || chapters.empty()) {
    std::cerr << "shears-kjv-splits: 'bible' failed (apt-get install bible-kjv)\n";
    return 1;
  }
  std::map<std::string, std::vector<std::string>> splits = {{"train", {}}, {"valid", {}}, {"test", {}}};
  for (const auto& [key, verses] : chapters) {
    const uLong h = crc32(0, reinterpret_cast<const Bytef*>(key.data()), static_cast<uInt>(key.size())) % 100;
    std::string chapter;
    for (size_t i = 0; i < verses.size(); ++i) chapter += (i ? "\n" : "") + verses[i];
    splits[h < 5 ? "test" : h < 10 ? "valid" : "train"].push_back(chapter);
  }
  for (const auto& [name, chs] : splits) {
    std::ofstream file(out + "/" + name + ".txt", std::ios::binary);
    for (size_t i = 0; i < chs.size(); ++i) file << (i ? "\n\n" : "") << chs[i];
    file << "\n";
    if (!file) {
      std::cerr << "shears-kjv-splits: cannot write " << out << "/" << name << ".txt\n";
      return 1;
    }
    std::cout << name << " " << chs.size() << " chapters\n";
  }
  return 0;
}
