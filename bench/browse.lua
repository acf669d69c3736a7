-- Searches with a query and a category filter, 20 results a page, spread over many queries.
local queries = {
  {"wireless", "electronics"}, {"speaker", "electronics"}, {"camera", "electronics"},
  {"novel", "books"}, {"atlas", "books"}, {"cookbook", "books"},
  {"skillet", "home-kitchen"}, {"teapot", "home-kitchen"}, {"walnut", "home-kitchen"},
  {"jacket", "fashion"}, {"leather", "fashion"}, {"boots", "fashion"},
  {"tent", "sports-outdoors"}, {"trail", "sports-outdoors"}, {"kayak", "sports-outdoors"},
  {"wooden", "toys-games"}, {"puzzle", "toys-games"}, {"robot", "toys-games"},
  {"soap", "beauty"}, {"serum", "beauty"}, {"planter", "garden"}, {"solar", "garden"},
  {"guitar", "music"}, {"vinyl", "music"}, {"coffee", "grocery"}, {"honey", "grocery"},
  {"leash", "pets"}, {"dog", "pets"}, {"notebook", "office"}, {"chair", "office"},
}
local colours = {"red", "blue", "green", "black", "white", "grey", "amber", "teal"}
local n = 0
request = function()
  n = n + 1
  local pick = queries[(n % #queries) + 1]
  local q = pick[1]
  if n % 3 == 0 then q = q .. "+" .. colours[(n % #colours) + 1] end
  local path = "/api/v1/listings?q=" .. q .. "&category=" .. pick[2] .. "&page_size=20"
  return wrk.format("GET", path)
end
